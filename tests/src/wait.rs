//! Waiting for something to become true in a cluster, with a deadline and a message
//! saying what was awaited when it does not happen.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// How often [`until`] checks.
const POLL: Duration = Duration::from_millis(200);

/// Calls `check` until it returns `Some`, at most for `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_or_times_out() {
        let mut calls = 0;
        let got = until("third call", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { (n == 3).then_some(n) }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
        let err = until("never", Duration::from_millis(300), || async { None::<()> })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "timed out after 0s waiting for never");
    }
}
