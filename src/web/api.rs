//! The JSON API the page uses (and scripts can): state and levels, the
//! stream of them, the takes, and the commands, which go to the daemon's
//! OSC socket and come back with its answer. Web server threads only.

use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rosc::{OscPacket, OscType};
use serde_json::{json, Value};

use super::{Shared, MAX_BODY, PAGE, STREAM_EVERY};
use crate::control::osc;
use crate::control::replies::{self, Kind};

pub type Reply = tiny_http::Response<io::Cursor<Vec<u8>>>;

/// The daemon's state as the page shows it (published by the control
/// loop each turn).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub state: String,
    /// The running take's id ("" when none).
    pub take: String,
    pub take_seconds: f64,
    pub take_bytes: u64,
    /// Frames lost in the running take (silence in its gaps).
    pub lost_frames: u64,
    pub xruns: u64,
    /// Why the recorder is in ERROR.
    pub error: String,
    pub trigger: String,
    pub armed: bool,
    pub free_bytes: u64,
    /// Bytes a second a take writes at the current rate and inputs.
    pub bytes_per_second: u64,
    pub sample_rate: u32,
    pub osc_port: u16,
    pub client: String,
    /// The alarms raised now.
    pub alarms: Vec<AlarmView>,
    /// How full the rings' room is (the disk is that far behind).
    pub ring_fill_percent: f64,
    /// Seconds of audio in the rings the disk thread has not taken in yet.
    pub disk_behind_seconds: f64,
}

/// A raised alarm, as the page shows it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AlarmView {
    /// `silent`, `clipping`, `disk_low`, `disk_behind` or `gap`.
    pub kind: String,
    /// The input it is about ("" for none).
    pub input: String,
    pub text: String,
}

fn with_type(r: Reply, ty: &str) -> Reply {
    let h = tiny_http::Header::from_bytes(&b"Content-Type"[..], ty.as_bytes()).expect("a valid header");
    let nc = tiny_http::Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..]).expect("a valid header");
    r.with_header(h).with_header(nc)
}

fn json_reply(code: u16, v: &Value) -> Reply {
    with_type(
        tiny_http::Response::from_data(serde_json::to_vec(v).unwrap_or_default()).with_status_code(code),
        "application/json",
    )
}

pub fn json_error(code: u16, msg: &str) -> Reply {
    json_reply(code, &json!({ "ok": false, "error": msg }))
}

/// The value of `key` in the URL's query, if any.
pub fn query(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

/// Answers one request (never a stream).
pub fn handle(shared: &Arc<Shared>, mut req: tiny_http::Request) -> io::Result<()> {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let get = *req.method() == tiny_http::Method::Get || *req.method() == tiny_http::Method::Head;
    let post = *req.method() == tiny_http::Method::Post;
    let command = path.starts_with("/api/record/")
        || path.starts_with("/api/trigger/")
        || path.starts_with("/api/config/");
    if let Err(r) = shared.check(&req, command) {
        return req.respond(r);
    }
    let reply = match (path.as_str(), get, post) {
        ("/", true, _) | ("/index.html", true, _) => {
            with_type(tiny_http::Response::from_data(PAGE.as_bytes().to_vec()), "text/html; charset=utf-8")
        }
        ("/api/status", true, _) => json_reply(200, &status_json(shared)),
        ("/api/takes", true, _) => json_reply(200, &takes_json(shared)),
        (p, true, _) if p.starts_with("/api/picture/") => picture(shared, &p["/api/picture/".len()..]),
        ("/api/config/storage", _, _) if get || post => {
            let mut body = String::new();
            if post {
                let _ = req.as_reader().take(MAX_BODY).read_to_string(&mut body);
            }
            let sh = shared.clone();
            let spawned = std::thread::Builder::new().name("capstan-web-command".into()).spawn(move || {
                let r = storage_reply(&sh, post.then_some(body));
                let _ = req.respond(r);
            });
            return spawned.map(|_| ());
        }
        (p, _, true) if command => {
            let mut body = String::new();
            let _ = req.as_reader().take(MAX_BODY).read_to_string(&mut body);
            let args: Value = if body.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str(&body) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => return req.respond(json_error(400, "the body must be a JSON object")),
                }
            };
            // A command can wait seconds for the disk thread: on a thread
            // of its own, so the page's other requests go on.
            let (sh, p) = (shared.clone(), p.to_string());
            let spawned = std::thread::Builder::new().name("capstan-web-command".into()).spawn(move || {
                let r = command_reply(&sh, &p, &args);
                let _ = req.respond(r);
            });
            return spawned.map(|_| ());
        }
        (p, _, _) if p == "/" || p.starts_with("/api/") => json_error(405, "method not allowed"),
        _ => json_error(404, "no such page"),
    };
    req.respond(reply)
}

/// State, take and every input's level, as `/api/status` and the stream
/// give them.
fn status_json(shared: &Shared) -> Value {
    let status = shared.board.status();
    let (names, levels) = shared.board.levels();
    let inputs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let l = levels.inputs.get(i).copied().unwrap_or_default();
            json!({
                "name": name,
                "peak_dbfs": finite(l.peak_dbfs()),
                "rms_dbfs": finite(l.rms_dbfs()),
                "clipped": l.clipped,
            })
        })
        .collect();
    let seconds_left = (status.bytes_per_second > 0).then(|| status.free_bytes / status.bytes_per_second);
    json!({
        "status": status,
        "seconds_left": seconds_left,
        "meter_windows": levels.windows,
        "inputs": inputs,
    })
}

/// Silence's -inf as JSON null, other levels to 0.1 dB.
fn finite(db: f64) -> Option<f64> {
    db.is_finite().then(|| (db * 10.0).round() / 10.0)
}

/// The takes in the directory, newest first, from their manifests.
fn takes_json(shared: &Shared) -> Value {
    let mut takes = Vec::new();
    let paths = crate::takefiles::manifest_paths(&shared.dir, None).unwrap_or_default();
    for p in paths {
        let Ok(m) = crate::manifest::Manifest::load(&p) else { continue };
        let Some(name) = crate::takefiles::take_name(&p) else { continue };
        let lost: u64 = m.gaps.iter().map(|g| g.frames).sum();
        takes.push(json!({
            "name": name,
            "take_id": m.take_id,
            "state": m.state,
            "started": m.started,
            "seconds": m.frames as f64 / m.sample_rate.max(1) as f64,
            "files": m.files,
            "gaps": m.gaps.len(),
            "lost_frames": lost,
            "clean": m.gaps.is_empty() && m.error.is_none(),
            "markers": m.markers,
            "loudness": m.loudness,
            "error": m.error,
            "picture": m.picture.as_ref().map(|_| format!("/api/picture/{name}")),
        }));
    }
    takes.sort_by(|a, b| b["started"].as_str().cmp(&a["started"].as_str()));
    takes.truncate(200);
    json!({ "takes": takes })
}

/// A take's picture, by the take's name: only the file its manifest names,
/// a regular file (no link) in the take's own directory.
fn picture(shared: &Shared, take: &str) -> Reply {
    if !crate::takefiles::plain_name(take) {
        return json_error(400, "not a take's name");
    }
    let paths = crate::takefiles::manifest_paths(&shared.dir, None).unwrap_or_default();
    for p in paths {
        if crate::takefiles::take_name(&p).as_deref() != Some(take) {
            continue;
        }
        let Ok(m) = crate::manifest::Manifest::load(&p) else { break };
        let (Some(name), Some(dir)) = (m.picture, p.parent()) else { break };
        if !crate::takefiles::plain_name(&name) {
            break;
        }
        let Ok((_, f)) = crate::takefiles::open_regular(dir, &name, false) else { break };
        let mut bytes = Vec::new();
        if f.take(64 << 20).read_to_end(&mut bytes).is_err() {
            break;
        }
        return with_type(tiny_http::Response::from_data(bytes), "image/png");
    }
    json_error(404, "no picture of that take")
}

/// The OSC command for a page's path and its arguments.
fn osc_command(path: &str, args: &Value) -> Option<(String, Vec<OscType>)> {
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(|s| OscType::String(s.to_string()));
    let osc_path = match path {
        "/api/record/start" => "/record/start",
        "/api/record/stop" => "/record/stop",
        "/api/record/rotate" => "/record/rotate",
        "/api/record/mark" => "/record/mark",
        "/api/record/reset" => "/record/reset",
        "/api/trigger/arm" => "/trigger/arm",
        "/api/trigger/disarm" => "/trigger/disarm",
        _ => return None,
    };
    let values = match osc_path {
        "/record/start" | "/record/rotate" => [text("take_id"), text("file")]
            .into_iter()
            .scan(true, |go, v| {
                // A file name needs the take id before it (OSC is positional).
                *go = *go && v.is_some();
                go.then_some(v)
            })
            .flatten()
            .collect(),
        "/record/stop" => text("take_id").into_iter().collect(),
        "/record/mark" => text("label").into_iter().collect(),
        _ => vec![],
    };
    Some((osc_path.to_string(), values))
}

/// Sends a page's command to the daemon and turns its answer into JSON:
/// `{"ok": true, …the reply's named values}` or `{"ok": false, "code",
/// "error"}` with the OSC error code.
fn command_reply(shared: &Shared, path: &str, args: &Value) -> Reply {
    let Some((osc_path, values)) = osc_command(path, args) else {
        return json_error(404, "no such command");
    };
    match ask(shared, &osc_path, values) {
        Ok(Ok(values)) => {
            let mut out = serde_json::Map::new();
            out.insert("ok".into(), json!(true));
            let fields = replies::reply_fields(&osc_path).unwrap_or(&[]);
            for ((name, kind), v) in fields.iter().zip(values) {
                out.insert((*name).into(), osc_json(*kind, &v));
            }
            json_reply(200, &Value::Object(out))
        }
        Ok(Err((code, msg))) => refused(code, &msg),
        Err(e) => json_error(504, &format!("the recorder did not answer: {e}")),
    }
}

/// A refusal as JSON, with the HTTP status its OSC error code means.
fn refused(code: i32, msg: &str) -> Reply {
    let status = match code {
        1 | 8 | 12 => 400,
        3 | 4 | 7 => 409,
        13 => 429,
        _ => 500,
    };
    json_reply(status, &json!({ "ok": false, "code": code, "error": msg }))
}

/// `GET /api/config/storage`: the storage settings; `POST` with a JSON
/// object of some of them: the change (`/config/storage`), answered with
/// the settings as they are now, or why it was refused.
fn storage_reply(shared: &Shared, change: Option<String>) -> Reply {
    let values = change.map(|b| vec![OscType::String(b)]).unwrap_or_default();
    match ask(shared, "/config/storage", values) {
        Ok(Ok(v)) => match v.first() {
            Some(OscType::String(j)) => {
                let storage: Value = serde_json::from_str(j).unwrap_or(Value::Null);
                json_reply(200, &json!({ "ok": true, "storage": storage }))
            }
            _ => json_error(500, "the recorder's answer held no settings"),
        },
        Ok(Err((code, msg))) => refused(code, &msg),
        Err(e) => json_error(504, &format!("the recorder did not answer: {e}")),
    }
}

fn osc_json(kind: Kind, v: &OscType) -> Value {
    match (kind, v) {
        (Kind::Count, OscType::Double(d)) => json!(*d as u64),
        (_, OscType::Double(d)) => json!(d),
        (_, OscType::Int(i)) => json!(i),
        (_, OscType::String(s)) => json!(s),
        (_, other) => json!(format!("{other:?}")),
    }
}

type Answer = Result<Vec<OscType>, (i32, String)>;

/// One OSC command to the daemon and its answer (up to 10 s: a start
/// waits for its first frame, a stop for its files).
fn ask(shared: &Shared, path: &str, values: Vec<OscType>) -> io::Result<Answer> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(shared.osc)?;
    sock.send(&osc::encode(path, values))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer within 10 s"));
        }
        sock.set_read_timeout(Some(left))?;
        let n = sock.recv(&mut buf)?;
        let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else { continue };
        if !matches!(m.args.first(), Some(OscType::String(p)) if p == path) {
            continue;
        }
        match (m.addr.as_str(), m.args.get(1), m.args.get(2)) {
            ("/reply", ..) => return Ok(Ok(m.args[1..].to_vec())),
            ("/error", Some(OscType::Int(code)), Some(OscType::String(msg))) => {
                return Ok(Err((*code, msg.clone())))
            }
            _ => {}
        }
    }
}

/// Server-sent events: the state and levels 25 times a second until the
/// page goes away or the server stops. Written straight to the socket, each
/// event flushed as it is made (a response body would sit in buffers).
pub fn stream_events(shared: &Shared, req: tiny_http::Request) {
    let mut w = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                Connection: close\r\n\r\n";
    if w.write_all(head.as_bytes()).and_then(|()| w.flush()).is_err() {
        return;
    }
    let mut event = Vec::new();
    while !shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
        let next = Instant::now() + STREAM_EVERY;
        event.clear();
        event.extend_from_slice(b"data: ");
        if serde_json::to_writer(&mut event, &status_json(shared)).is_err() {
            return;
        }
        event.extend_from_slice(b"\n\n");
        if w.write_all(&event).and_then(|()| w.flush()).is_err() {
            return; // the page went away
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
