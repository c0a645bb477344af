//! The Janus target: Debian's `janus` started as its own process from a configuration generated
//! in a temporary directory — the VideoRoom plugin and the WebSocket transport on 127.0.0.1 only
//! (the plugin and transport folders hold just those two), a fixed RTP port range, no STUN, ICE
//! on the bench's media address only — with one room for the bench.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::bridge;
use super::load::{self, Join, Load};
use super::report::Outcome;

/// The room the bench uses.
pub const ROOM: u64 = 1000;
/// UDP ports Janus uses for ICE (the media node uses 56000-56999).
const RTP_PORTS: &str = "57000-57999";

/// A running Janus; killed and its directory removed on drop.
pub struct Janus {
    child: Child,
    dir: PathBuf,
    /// Its WebSocket API, `ws://127.0.0.1:<port>`.
    pub url: String,
}

impl Janus {
    /// Process id (all its threads count in `/proc/<pid>/stat`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SFU_BENCH_KEEP_JANUS keeps the configuration and janus.log for a look.
        if std::env::var_os("SFU_BENCH_KEEP_JANUS").is_some() {
            eprintln!(
                "janus: configuration and log kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Where the package put Janus's plugins and transports (`<lib>/janus`).
fn module_dir() -> Option<PathBuf> {
    let mut candidates = vec![
        PathBuf::from("/usr/local/lib/janus"),
        PathBuf::from("/opt/janus/lib/janus"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        candidates.extend(entries.flatten().map(|e| e.path().join("janus")));
    }
    candidates.push(PathBuf::from("/usr/lib/janus"));
    candidates
        .into_iter()
        .find(|d| d.join("plugins/libjanus_videoroom.so").exists())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes the configuration into `dir` and links the two modules Janus may load.
fn configure(dir: &Path, modules: &Path, port: u16, publishers: usize) -> anyhow::Result<()> {
    let ip = load::media_ip();
    for (folder, module) in [
        ("plugins", "libjanus_videoroom.so"),
        ("transports", "libjanus_websockets.so"),
        ("events", ""),
        ("loggers", ""),
    ] {
        std::fs::create_dir_all(dir.join(folder))?;
        if !module.is_empty() {
            std::os::unix::fs::symlink(
                modules.join(folder).join(module),
                dir.join(folder).join(module),
            )?;
        }
    }
    let d = dir.display();
    // Janus gives each handle its own thread by default; SFU_BENCH_JANUS_EVENT_LOOPS=<n> has
    // the handles share n loops instead.
    let loops = std::env::var("SFU_BENCH_JANUS_EVENT_LOOPS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(String::new(), |n| format!("  event_loops = {n}\n"));
    let core = format!(
        r#"general: {{
  configs_folder = "{d}"
  plugins_folder = "{d}/plugins"
  transports_folder = "{d}/transports"
  events_folder = "{d}/events"
  loggers_folder = "{d}/loggers"
  debug_level = 3
  session_timeout = 60
{loops}}}
media: {{
  rtp_port_range = "{RTP_PORTS}"
}}
nat: {{
  nice_debug = false
  ice_enforce_list = "{ip}"
  ignore_mdns = true
}}
"#
    );
    let websockets = format!(
        r#"general: {{
  json = "plain"
  ws = true
  ws_ip = "127.0.0.1"
  ws_port = {port}
  wss = false
}}
admin: {{
  admin_ws = false
  admin_wss = false
}}
"#
    );
    // bitrate 0: no REMB cap sent to publishers; fir_freq 0: no periodic keyframe requests.
    let videoroom = format!(
        r#"general: {{
}}
room-{ROOM}: {{
  description = "sfu bench"
  publishers = {publishers}
  bitrate = 0
  fir_freq = 0
  videocodec = "vp8"
}}
"#
    );
    std::fs::write(dir.join("janus.jcfg"), core)?;
    std::fs::write(dir.join("janus.transport.websockets.jcfg"), websockets)?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), videoroom)?;
    Ok(())
}

/// Starts Janus with room [`ROOM`] for `publishers` publishers, pinned to `cpus` (a taskset
/// list) when given, and waits until its WebSocket API accepts connections.
pub async fn start(publishers: usize, cpus: Option<&str>) -> anyhow::Result<Janus> {
    let modules = module_dir()
        .ok_or_else(|| anyhow!("janus is not installed (no janus/plugins/libjanus_videoroom.so under /usr/lib); run scripts/ensure-packages.sh bench"))?;
    let dir = std::env::temp_dir().join(format!("sfu-bench-janus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port()?;
    configure(&dir, &modules, port, publishers.max(1))?;
    let log = std::fs::File::create(dir.join("janus.log"))?;
    let config = dir.join("janus.jcfg");
    let mut command = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg("janus");
            c
        }
        None => Command::new("janus"),
    };
    let child = command
        .arg("--config")
        .arg(&config)
        .arg("--configs-folder")
        .arg(&dir)
        .arg("--disable-colors")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting janus")?;
    let janus = Janus {
        child,
        dir,
        url: format!("ws://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(janus);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(janus.dir.join("janus.log")).unwrap_or_default();
    bail!("janus did not open its WebSocket port {port} within 10 s; its log:\n{log}")
}

/// Runs `load` against a fresh Janus pinned to `cpus`, its clients joined through the bridge.
pub async fn run(load: &Load, cpus: Option<&str>) -> anyhow::Result<Outcome> {
    let janus = start(load.publishers, cpus).await?;
    let quota = super::quota::CpuQuota::from_env(janus.pid())?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = load::proc_stats(janus.pid());
    let url = bridge::serve(&janus.url, load.publishers).await?;
    let identity = |who: &str| who.to_owned();
    let join = Join {
        url: &url,
        ip: load::media_ip(),
        conference: "bench",
        token: &identity,
        separate_receivers: true,
    };
    let all = load::connect_all(load, &join).await?;
    let media = load::start_media(load, &all);
    let complete = load::warm_up(&all).await;
    let window = load::measure(janus.pid(), &all, load.seconds, load.pps).await;
    let cipher = load::cipher(&all).await;
    load::stop(media, all).await;
    drop(janus);
    drop(quota);
    Ok(Outcome {
        target: "janus",
        window,
        idle_kib: idle.rss_kib,
        cipher,
        loadavg: load::loadavg(),
        complete,
        node: None,
    })
}
