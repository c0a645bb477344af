//! A bandwidth limit on what a node sends to one address and port (one browser's end of a
//! call): an htb class in the node's network namespace, on its interface towards that
//! address, holds the datagrams to it to a rate; everything else goes by unlimited.
//! Dropping the [`NarrowLink`] removes it.

use std::net::SocketAddrV4;

use crate::netns::{exec, undo};

/// A rate limit applied until dropped.
pub struct NarrowLink {
    netns: String,
    device: String,
}

/// The device named in `ip route get` output (`... dev <name> ...`).
fn route_device(route: &str) -> Option<&str> {
    let mut words = route.split_whitespace();
    words.find(|w| *w == "dev")?;
    words.next()
}

/// The tc commands that hold what goes out of `device` to `to` to `kbit` kilobits per second.
fn commands(device: &str, to: SocketAddrV4, kbit: u32) -> Vec<Vec<String>> {
    let rate = format!("{kbit}kbit");
    let words = |line: &str| line.split_whitespace().map(str::to_owned).collect();
    vec![
        words(&format!(
            "tc qdisc add dev {device} root handle 1: htb default 1"
        )),
        words(&format!(
            "tc class add dev {device} parent 1: classid 1:1 htb rate 10gbit"
        )),
        words(&format!(
            "tc class add dev {device} parent 1: classid 1:2 htb rate {rate} ceil {rate}"
        )),
        words(&format!(
            "tc filter add dev {device} parent 1: protocol ip prio 1 u32 match ip dst {}/32 \
             match ip dport {} 0xffff flowid 1:2",
            to.ip(),
            to.port()
        )),
    ]
}

impl NarrowLink {
    /// Limits what network namespace `netns` (a node's) sends to `to` to `kbit` kilobits per
    /// second.
    pub async fn start(netns: &str, to: SocketAddrV4, kbit: u32) -> Result<NarrowLink, String> {
        let route = exec(netns, &["ip", "route", "get", &to.ip().to_string()], None).await?;
        let device = route_device(&route)
            .ok_or_else(|| format!("no device in the route to {to}: {route}"))?
            .to_owned();
        let link = NarrowLink {
            netns: netns.to_owned(),
            device,
        };
        for command in commands(&link.device, to, kbit) {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            exec(netns, &args, None).await?;
        }
        Ok(link)
    }
}

impl Drop for NarrowLink {
    fn drop(&mut self) {
        undo(
            &self.netns,
            &["tc", "qdisc", "del", "dev", &self.device, "root"],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_comes_from_the_route() {
        assert_eq!(
            route_device("10.213.0.1 dev eth0 src 10.213.0.11 uid 0 \n    cache \n"),
            Some("eth0")
        );
        assert_eq!(route_device("unreachable"), None);
    }

    #[test]
    fn only_the_one_address_and_port_is_limited() {
        let c = commands("eth0", "10.213.0.1:5000".parse().unwrap(), 300);
        assert_eq!(
            c[2].join(" "),
            "tc class add dev eth0 parent 1: classid 1:2 htb rate 300kbit ceil 300kbit"
        );
        assert!(
            c[3].join(" ")
                .contains("match ip dst 10.213.0.1/32 match ip dport 5000 0xffff flowid 1:2")
        );
    }
}
