//! `capstan ctl`: a small OSC client for humans and scripts. Sends one
//! command, prints the reply, exits 0 on `/reply`, 1 on `/error`, 2 when no
//! reply came in time.

use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rosc::{OscPacket, OscType};

use crate::control::osc;
use crate::control::replies::{self, Kind};

/// `capstan ctl`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CtlArgs {
    /// Where the daemon listens.
    #[arg(long, default_value = "127.0.0.1:7770")]
    pub osc: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Print the reply as one JSON object with named values (frame and byte
    /// counts as exact integers).
    #[arg(long)]
    pub json: bool,
    /// start [take_id] [file] | stop [take_id] | rotate [take_id] [file] |
    /// status | mark [label] | list | files [index] | reset | subscribe |
    /// watch [rate] (on a terminal the reply is printed labelled, in human
    /// units; piped, as bare values on one line; --json for scripts; watch
    /// shows the state and a meter per input until Ctrl-C)
    pub command: String,
    pub args: Vec<String>,
}

/// A value for people: counts of frames and bytes as integers, real
/// numbers with three decimals.
fn show(kind: Option<Kind>, a: &OscType) -> String {
    match (kind, a) {
        (Some(Kind::Count), OscType::Double(v)) => format!("{v:.0}"),
        (_, OscType::String(s)) => s.clone(),
        (_, OscType::Int(v)) => v.to_string(),
        (_, OscType::Long(v)) => v.to_string(),
        (_, OscType::Float(v)) => v.to_string(),
        (_, OscType::Double(v)) => format!("{v:.3}"),
        (_, other) => format!("{other:?}"),
    }
}

/// A value for `--json`: counts as exact integers.
fn json(kind: Kind, a: &OscType) -> serde_json::Value {
    match (kind, a) {
        (Kind::Count, OscType::Double(v)) => serde_json::json!(*v as u64),
        (_, OscType::String(s)) => serde_json::json!(s),
        (_, OscType::Int(v)) => serde_json::json!(v),
        (_, OscType::Double(v)) => serde_json::json!(v),
        (_, other) => serde_json::json!(format!("{other:?}")),
    }
}

/// One labelled value for a terminal, in human units.
fn labelled(name: &str, kind: Option<Kind>, v: &OscType) -> String {
    let value = match (name, v) {
        (n, OscType::Double(x)) if n.ends_with("bytes") => crate::status::bytes(*x as u64),
        ("seconds", OscType::Double(x)) => format!("{x:.3} s"),
        (n, OscType::String(t)) if t.is_empty() && n != "files" => "-".into(),
        _ => show(kind, v),
    };
    format!("{name}: {value}")
}

/// How the reply is printed: one JSON object, labelled lines for a person
/// at a terminal, or the bare values on one line for scripts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Json,
    Human,
    Plain,
}

/// Prints the values of a `/reply` or `/error` (after the path).
fn print(fields: &[(&str, Kind)], values: &[OscType], style: Style) {
    match style {
        Style::Json => {
            let obj: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .zip(values)
                .map(|((name, kind), v)| (name.to_string(), json(*kind, v)))
                .collect();
            println!("{}", serde_json::Value::Object(obj));
        }
        Style::Human if values.is_empty() => println!("(nothing: no take is running)"),
        Style::Human => {
            for (i, v) in values.iter().enumerate() {
                let (name, kind) = fields.get(i).map_or(("value", None), |f| (f.0, Some(f.1)));
                println!("{}", labelled(name, kind, v));
            }
        }
        Style::Plain if values.is_empty() => {}
        Style::Plain => {
            let kinds = fields.iter().map(|f| Some(f.1)).chain(std::iter::repeat(None));
            println!("{}", values.iter().zip(kinds).map(|(v, k)| show(k, v)).collect::<Vec<_>>().join(" "));
        }
    }
}

pub fn run(args: CtlArgs) -> Result<ExitCode> {
    if args.command == "watch" {
        return watch(&args);
    }
    let known = ["start", "stop", "rotate", "status", "mark", "list", "files", "reset", "subscribe", "watch"];
    if !known.contains(&args.command.as_str()) {
        bail!("unknown command {:?} (use one of: {})", args.command, known.join(", "));
    }
    let style = if args.json {
        Style::Json
    } else if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        Style::Human
    } else {
        Style::Plain
    };
    let path = format!("/record/{}", args.command);
    let socket = UdpSocket::bind("127.0.0.1:0").or_else(|_| UdpSocket::bind("0.0.0.0:0"))?;
    socket.connect(&args.osc).with_context(|| format!("bad --osc address {:?}", args.osc))?;
    let values = if args.command == "files" {
        // `/record/files` takes the index to page from, a number.
        let offset = match args.args.first() {
            None => 0,
            Some(a) => a.parse::<i32>().ok().filter(|n| *n >= 0).with_context(|| {
                format!("ctl files takes the index of the first path to list, a whole number; got {a:?}")
            })?,
        };
        vec![OscType::Int(offset)]
    } else {
        args.args.iter().map(|a| OscType::String(a.clone())).collect()
    };
    let msg = osc::encode(&path, values);
    socket.send(&msg).with_context(|| format!("sending to {}", args.osc))?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout.max(0.1));
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        socket.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
        ))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                break
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                eprintln!("capstan ctl: nothing listens on {} (is the daemon running?)", args.osc);
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        };
        let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else { continue };
        let for_us = matches!(m.args.first(), Some(OscType::String(p)) if *p == path);
        match m.addr.as_str() {
            "/reply" if for_us => {
                print(replies::reply_fields(&path).unwrap_or(&[]), &m.args[1..], style);
                return Ok(ExitCode::SUCCESS);
            }
            "/error" if for_us => {
                if args.json {
                    print(&[("code", Kind::Int), ("message", Kind::Text)], &m.args[1..], Style::Json);
                } else {
                    eprintln!(
                        "capstan ctl: {}",
                        m.args[1..].iter().map(|a| show(None, a)).collect::<Vec<_>>().join(" ")
                    );
                }
                return Ok(ExitCode::FAILURE);
            }
            _ => {} // feedback for subscribers, or someone else's reply
        }
    }
    eprintln!("capstan ctl: no reply from {} within {} s", args.osc, args.timeout);
    Ok(ExitCode::from(2))
}

/// `capstan ctl watch [rate]`: the daemon's state and a meter per input
/// (its meter feed, `/record/meters`), redrawn in place on a terminal, or a
/// line a second when piped, until SIGINT/SIGTERM.
fn watch(args: &CtlArgs) -> Result<ExitCode> {
    use crate::disk::meter::InputLevel;
    let rate: u32 = match args.args.first() {
        None => 10,
        Some(r) => r.parse().ok().filter(|r| (1..=osc::MAX_METER_RATE).contains(r)).with_context(|| {
            format!("ctl watch takes a rate from 1 to {} a second; got {r:?}", osc::MAX_METER_RATE)
        })?,
    };
    let socket = UdpSocket::bind("127.0.0.1:0").or_else(|_| UdpSocket::bind("0.0.0.0:0"))?;
    socket.connect(&args.osc).with_context(|| format!("bad --osc address {:?}", args.osc))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let send = |path: &str, values: Vec<OscType>| socket.send(&osc::encode(path, values));
    let term = crate::signals::stop_flag()?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut screen = crate::status::MeterScreen::default();
    let (mut names, mut levels, mut state) = (Vec::<String>::new(), Vec::<InputLevel>::new(), String::new());
    let (mut last_ask, mut last_line, mut last_feed) = (None::<Instant>, Instant::now(), None::<Instant>);
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    while !term.load(std::sync::atomic::Ordering::Relaxed) {
        // The settings (the inputs' names) and the state once a second; the
        // feed renewed, in case the daemon restarted.
        if last_ask.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_ask = Some(Instant::now());
            if names.is_empty() {
                let _ = send("/config/get", vec![]);
            }
            let _ = send("/record/status", vec![]);
            let _ = send("/record/meters", vec![OscType::Int(rate as i32)]);
        }
        if last_feed.is_none() && started.elapsed() > Duration::from_secs(5) {
            eprintln!("capstan ctl: no meters from {} (is the daemon running?)", args.osc);
            return Ok(ExitCode::from(2));
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // A signal (Ctrl-C) interrupts the wait: the loop sees the flag.
            Err(e) if osc::no_datagram(&e) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else { continue };
        let path = matches!(m.args.first(), Some(OscType::String(_))).then(|| show(None, &m.args[0]));
        match (m.addr.as_str(), path.as_deref()) {
            (osc::METERS_PUSH, _) => {
                last_feed = Some(Instant::now());
                let clips = match m.args.last() {
                    Some(OscType::String(c)) => c.clone(),
                    _ => String::new(),
                };
                levels = m.args[..m.args.len().saturating_sub(1)]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let db = if let OscType::Float(db) = v { *db } else { f32::NEG_INFINITY };
                        let peak = 10f32.powf(db / 20.0);
                        InputLevel { peak, rms: peak, clipped: clips.as_bytes().get(i) == Some(&b'1') }
                    })
                    .collect();
            }
            ("/reply", Some("/record/status")) => {
                let v = |i: usize| m.args.get(i).map(|a| show(None, a)).unwrap_or_default();
                let secs = match m.args.get(3) {
                    Some(OscType::Double(s)) => *s,
                    _ => 0.0,
                };
                state = match v(2).as_str() {
                    "" => format!("{}  lost {}  xruns {}", v(1).to_uppercase(), v(5), v(6)),
                    take => format!(
                        "{}  {take}  {}  lost {}  xruns {}",
                        v(1).to_uppercase(),
                        crate::status::clock((secs * 1000.0) as u64, 1000),
                        v(5),
                        v(6)
                    ),
                };
            }
            ("/reply", Some("/config/get")) => {
                let pairs: Vec<String> = m.args[1..].iter().map(|a| show(None, a)).collect();
                if let Some(i) = pairs.iter().position(|p| p == "port_names") {
                    names = pairs
                        .get(i + 1)
                        .map(|n| n.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                }
            }
            _ => {}
        }
        if names.len() != levels.len() {
            names =
                (1..=levels.len()).map(|i| names.get(i - 1).cloned().unwrap_or(format!("in_{i}"))).collect();
        }
        if tty {
            print!("{}", screen.frame(&state, &names, &levels));
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else if last_line.elapsed() >= Duration::from_secs(1) && !levels.is_empty() {
            last_line = Instant::now();
            let peaks: Vec<String> = names
                .iter()
                .zip(&levels)
                .map(|(n, l)| {
                    format!("{n} {}{}", crate::status::dbfs(l.peak), if l.clipped { " CLIP" } else { "" })
                })
                .collect();
            println!("{state} | {}", peaks.join("  "));
        }
    }
    let _ = send("/record/meters", vec![OscType::Int(0)]);
    if tty {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_labelled_in_human_units() {
        assert_eq!(labelled("bytes", Some(Kind::Count), &OscType::Double(38_797_312.0)), "bytes: 37.0 MiB");
        assert_eq!(
            labelled("free_bytes", Some(Kind::Count), &OscType::Double(3.0 * 1024.0 * 1024.0 * 1024.0)),
            "free_bytes: 3.00 GiB"
        );
        assert_eq!(labelled("seconds", Some(Kind::Real), &OscType::Double(4.1)), "seconds: 4.100 s");
        assert_eq!(labelled("take_id", Some(Kind::Text), &OscType::String(String::new())), "take_id: -");
        assert_eq!(labelled("xruns", Some(Kind::Int), &OscType::Int(3)), "xruns: 3");
    }
}
