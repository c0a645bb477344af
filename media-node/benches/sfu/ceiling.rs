//! The bare forwarder: what this machine allows an SFU per packet with no WebRTC stack at all,
//! the ceiling Conclave is compared with. One thread (pinned like the SFU process) receives
//! the publishers' packets in batches (`recvmmsg`), seals a copy for every receiver with
//! AES-128-GCM (what the SRTP AEAD profile does per outgoing packet), and sends each
//! receiver's copies of a batch as one GSO send (`UDP_SEGMENT`), all receivers in one
//! `sendmmsg`: the batching the media node's outbox does, whose runs to one subscriber go
//! out as one GSO send. The sinks read with GRO, as the benchmark's clients do. The load is
//! the SFU benchmark's (publishers sending 30 frames a second of pps/30 packets of 1,000
//! bytes, every participant receiving every publisher but itself). Its packets per
//! CPU-second of that thread is the ceiling.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg, setsockopt, sockopt,
};
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
/// Bytes of each sealed copy: every datagram of a GSO send but the last has this size.
const SEALED: usize = PACKET + TAG;
/// What a sink reads at once: a GRO train of datagrams.
const GRO_READ: usize = 65_536;

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
        setsockopt(&sink, sockopt::UdpGroSegment, &true)?;
        let (running, delivered) = (Arc::clone(&running), Arc::clone(&delivered));
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; GRO_READ];
            while running.load(Ordering::Relaxed) {
                if let Ok(len) = sink.recv(&mut buf) {
                    // Every datagram is SEALED bytes: a train of n reads as n × SEALED.
                    delivered.fetch_add(len.div_ceil(SEALED) as u64, Ordering::Relaxed);
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
        // Buffers are made once; per batch the loop allocates two short lists (the batch's
        // packets, its sends), nothing per packet.
        let mut inbound = [[0u8; 2_048]; BATCH];
        let mut lengths = [0usize; BATCH];
        // One train per receiver: its sealed copies of a batch, back to back.
        let mut trains = vec![vec![0u8; BATCH * SEALED]; receivers.len()];
        let addresses: Vec<Option<SockaddrIn>> = receivers.iter().copied().map(Some).collect();
        let mut receiving = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        let mut sending =
            MultiHeaders::<SockaddrIn>::preallocate(receivers.len(), Some(nix::cmsg_space!(u16)));
        let segment = SEALED as u16;
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
            // The publishers send PACKET bytes; anything else is not forwarded.
            let packets: Vec<&[u8]> = inbound
                .iter()
                .zip(lengths)
                .take(received)
                .filter(|(_, len)| *len == PACKET)
                .map(|(packet, _)| &packet[..PACKET])
                .collect();
            if packets.is_empty() {
                continue;
            }
            for train in &mut trains {
                for (packet, out) in packets.iter().zip(train.chunks_exact_mut(SEALED)) {
                    out[..PACKET].copy_from_slice(packet);
                    counter += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&counter.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(&nonce[..]),
                            &mut out[..PACKET],
                        )
                        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
                    out[PACKET..].copy_from_slice(tag.as_ref());
                }
            }
            let bytes = packets.len() * SEALED;
            let slices: Vec<[std::io::IoSlice<'_>; 1]> = trains
                .iter()
                .map(|train| [std::io::IoSlice::new(&train[..bytes])])
                .collect();
            let gso = [ControlMessage::UdpGsoSegments(&segment)];
            if let Ok(results) = sendmmsg(
                fd,
                &mut sending,
                &slices,
                &addresses,
                gso,
                MsgFlags::empty(),
            ) {
                sent += results.count() as u64 * packets.len() as u64;
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
