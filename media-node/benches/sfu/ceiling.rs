//! The bare forwarder: what this machine allows an SFU per packet with no WebRTC stack at all,
//! the ceiling Conclave is compared with. One thread (pinned like the SFU process) receives
//! the publishers' packets in batches (`recvmmsg`), seals a copy for every receiver with
//! AES-128-GCM (what the SRTP AEAD profile does per outgoing packet), and sends them in
//! batches (`sendmmsg`); the load is the SFU benchmark's (publishers sending 30 frames a
//! second of pps/30 packets of 1,000 bytes, every participant receiving every publisher but
//! itself). Its packets per CPU-second of that thread is the ceiling.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::load::Load;

/// Packets received per call, and sent per call.
const BATCH: usize = 32;
/// Sockets the receivers' packets go to (each drained by a thread of its own).
const SINKS: usize = 4;
/// Bytes of each publisher packet, as the SFU benchmark sends.
const PACKET: usize = 1_000;
/// The GCM tag SRTP appends.
const TAG: usize = 16;

/// What the bare forwarder did.
pub struct Ceiling {
    /// Packets sent to receivers per second.
    pub forwarded_per_second: f64,
    /// Of the packets the load should have made forwarded, the share that was.
    pub delivered: f64,
    /// Packets sent per CPU-second of the forwarding thread.
    pub per_cpu_second: f64,
}

fn cpu_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0.0, |u| {
        let (user, system) = (u.user_time(), u.system_time());
        user.tv_sec() as f64
            + user.tv_usec() as f64 / 1e6
            + system.tv_sec() as f64
            + system.tv_usec() as f64 / 1e6
    })
}

fn v4(socket: &UdpSocket) -> anyhow::Result<SockaddrIn> {
    match socket.local_addr()? {
        SocketAddr::V4(a) => Ok(SockaddrIn::from(a)),
        SocketAddr::V6(_) => anyhow::bail!("an IPv4 socket was bound"),
    }
}

/// Runs the bare forwarder under `load`, its forwarding thread on `cpu` when given.
pub fn run(load: &Load, cpu: Option<usize>) -> anyhow::Result<Ceiling> {
    let loopback = SocketAddrV4::new([127, 0, 0, 1].into(), 0);
    let forwarder = UdpSocket::bind(loopback)?;
    forwarder.set_read_timeout(Some(Duration::from_millis(50)))?;
    let to_forwarder = forwarder.local_addr()?;
    let sinks: Vec<UdpSocket> = (0..SINKS)
        .map(|_| UdpSocket::bind(loopback))
        .collect::<Result<_, _>>()?;
    let fan_out = load.publishers.saturating_sub(1) + load.subscribers;
    let receivers: Vec<SockaddrIn> = (0..fan_out)
        .map(|i| v4(&sinks[i % SINKS]))
        .collect::<anyhow::Result<_>>()?;
    let running = Arc::new(AtomicBool::new(true));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for sink in sinks {
        sink.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (running, delivered) = (Arc::clone(&running), Arc::clone(&delivered));
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2_048];
            while running.load(Ordering::Relaxed) {
                if sink.recv(&mut buf).is_ok() {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let publisher = {
        let running = Arc::clone(&running);
        let per_frame = (load.pps as usize / 30).max(1) * load.publishers;
        std::thread::spawn(move || -> std::io::Result<()> {
            let socket = UdpSocket::bind(loopback)?;
            let payload = [0xabu8; PACKET];
            let mut next = Instant::now();
            while running.load(Ordering::Relaxed) {
                for _ in 0..per_frame {
                    socket.send_to(&payload, to_forwarder)?;
                }
                next += Duration::from_secs(1) / 30;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(())
        })
    };
    let seconds = load.seconds as f64;
    let forwarding = std::thread::spawn(move || -> anyhow::Result<(u64, f64, f64)> {
        if let Some(cpu) = cpu {
            let mut set = nix::sched::CpuSet::new();
            set.set(cpu)?;
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
        }
        let key = UnboundKey::new(&AES_128_GCM, &[7u8; 16])
            .map_err(|_| anyhow::anyhow!("an AES-128-GCM key"))?;
        let key = LessSafeKey::new(key);
        let fd = forwarder.as_raw_fd();
        // Everything the loop touches is made once: the measured thread allocates nothing.
        let mut inbound = [[0u8; 2_048]; BATCH];
        let mut lengths = [0usize; BATCH];
        let mut outbound = [[0u8; PACKET + TAG]; BATCH];
        let mut outbound_lengths = [0usize; BATCH];
        let mut outbound_to: [Option<SockaddrIn>; BATCH] = [None; BATCH];
        let mut receiving = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        let mut sending = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        let mut sent = 0u64;
        let mut counter = 0u64;
        let started = Instant::now();
        let cpu0 = cpu_seconds();
        while started.elapsed().as_secs_f64() < seconds {
            let received = {
                let mut slices = inbound.each_mut().map(|b| [std::io::IoSliceMut::new(b)]);
                match recvmmsg(
                    fd,
                    &mut receiving,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => {
                        let mut n = 0;
                        for (length, result) in lengths.iter_mut().zip(results) {
                            *length = result.bytes;
                            n += 1;
                        }
                        n
                    }
                    Err(_) => continue,
                }
            };
            let mut queued = 0;
            for (packet, len) in inbound.iter().zip(lengths).take(received) {
                let body = len.min(PACKET);
                for to in &receivers {
                    let out = &mut outbound[queued];
                    out[..body].copy_from_slice(&packet[..body]);
                    counter += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&counter.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(&nonce[..]),
                            &mut out[..body],
                        )
                        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
                    out[body..body + TAG].copy_from_slice(tag.as_ref());
                    outbound_lengths[queued] = body + TAG;
                    outbound_to[queued] = Some(*to);
                    queued += 1;
                    if queued == BATCH {
                        sent += send_batch(
                            fd,
                            &mut sending,
                            &outbound,
                            &outbound_lengths,
                            &outbound_to,
                            queued,
                        );
                        queued = 0;
                    }
                }
            }
            if queued > 0 {
                sent += send_batch(
                    fd,
                    &mut sending,
                    &outbound,
                    &outbound_lengths,
                    &outbound_to,
                    queued,
                );
            }
        }
        Ok((sent, cpu_seconds() - cpu0, started.elapsed().as_secs_f64()))
    });
    let (sent, cpu, elapsed) = forwarding
        .join()
        .map_err(|_| anyhow::anyhow!("the forwarding thread panicked"))??;
    running.store(false, Ordering::Relaxed);
    let _ = publisher.join();
    for t in threads {
        let _ = t.join();
    }
    let offered = (load.pps as usize / 30).max(1) as f64 * 30.0 * load.publishers as f64;
    let expected = offered * fan_out as f64 * elapsed;
    Ok(Ceiling {
        forwarded_per_second: sent as f64 / elapsed,
        delivered: delivered.load(Ordering::Relaxed) as f64 / expected.max(1.0),
        per_cpu_second: sent as f64 / cpu.max(1e-9),
    })
}

/// Sends the first `n` of `packets` (of `lengths` bytes) to their addresses in one call; how
/// many went.
fn send_batch(
    fd: std::os::fd::RawFd,
    headers: &mut MultiHeaders<SockaddrIn>,
    packets: &[[u8; PACKET + TAG]; BATCH],
    lengths: &[usize; BATCH],
    to: &[Option<SockaddrIn>; BATCH],
    n: usize,
) -> u64 {
    let slices: [[std::io::IoSlice<'_>; 1]; BATCH] =
        std::array::from_fn(|i| [std::io::IoSlice::new(&packets[i][..lengths[i]])]);
    sendmmsg(fd, headers, &slices[..n], &to[..n], [], MsgFlags::empty())
        .map_or(0, |results| results.count() as u64)
}
