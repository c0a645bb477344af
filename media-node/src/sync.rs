//! Locks that survive a panic elsewhere: no critical section of this crate leaves its data
//! half-changed, so a poisoned lock still guards consistent data.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data of a poisoned lock as it is.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
