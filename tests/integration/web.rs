//! The web control surface in a real browser (headless Chromium through
//! chromedriver, spoken to in plain WebDriver): the meters read the levels
//! the inputs carry, and the page's buttons record, mark and stop a take.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A headless Chromium driven through chromedriver; both stopped on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(Path::new).find(|p| p.exists()).map(Path::to_path_buf)
}

impl Browser {
    fn start() -> Browser {
        let driver = which(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver is installed (apt-get install chromium chromium-driver; scripts/setup.sh)");
        let chromium =
            which(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]).expect("chromium is installed");
        let port = free_tcp_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser { driver: child, port, session: String::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.request("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--force-device-scale-factor=1"]
            }
        }}});
        let v = b.request("POST", "/session", Some(caps)).expect("a browser session");
        b.session = v["value"]["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    /// One WebDriver command; its JSON answer, or the error it reported.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let (head, body) = read_http(&mut s).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if head.starts_with("HTTP/1.1 200") {
            Ok(v)
        } else {
            Err(v["value"]["message"].as_str().unwrap_or(&body).to_string())
        }
    }

    fn cmd(&self, method: &str, what: &str, body: Value) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        let body = (!body.is_null()).then_some(body);
        self.request(method, &path, body).unwrap_or_else(|e| panic!("{what}: {e}"))["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "url", json!({ "url": url }));
    }

    /// Runs `script` in the page; its return value.
    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "execute/sync", json!({ "script": script, "args": [] }))
    }

    fn click(&self, css: &str) {
        let el = self.cmd("POST", "element", json!({ "using": "css selector", "value": css }));
        let id = el.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("an element");
        self.cmd("POST", &format!("element/{id}/click"), json!({}));
    }

    fn screenshot(&self, to: &Path) -> Vec<u8> {
        let b64 = self.cmd("GET", "screenshot", Value::Null);
        let png = base64(b64.as_str().expect("base64 PNG"));
        std::fs::write(to, &png).unwrap();
        png
    }

    /// Polls `script` until it returns true (the page is live: 30 s is a
    /// bound for a busy machine, not a measurement).
    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.js(script) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}: {}",
                self.js("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP answer: its head and its body (by Content-Length, or chunked;
/// chromedriver keeps the connection open, so nothing waits for its end).
fn read_http(s: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut r = std::io::BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut r, &mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = lower.lines().find_map(|l| l.strip_prefix("content-length:")) {
        body.resize(len.trim().parse().unwrap_or(0), 0);
        r.read_exact(&mut body)?;
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            std::io::BufRead::read_line(&mut r, &mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    clean
        .chunks(4)
        .flat_map(|q| {
            let v: u32 = q.iter().enumerate().fold(0, |a, (i, &c)| a | (val(c) as u32) << (18 - 6 * i));
            let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
            bytes.into_iter().take(q.len() - 1)
        })
        .collect()
}

/// Distinct colours in a PNG's raw pixel rows (a blank page has one or two).
fn colours(png: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let px = info.color_type.samples();
    let mut seen = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px).step_by(7) {
        seen.insert(p.to_vec());
    }
    seen.len()
}

/// Screenshots go where CI keeps its artifacts.
fn shots() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The page in a real browser: meters read the −20 dBFS tone on two inputs
/// and silence on the two left unconnected, before any take; the page's
/// buttons record, set a named marker and stop; the take's file holds the
/// tone and the silence, and its manifest the marker.
#[test]
fn the_page_shows_every_input_and_records_marks_and_stops() {
    let server = JackServer::start(256);
    let src = server.source_with(2, &["--tone", "-20"]);
    let dir = tempdir();
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "4", "--connect", "src:out_*", "--http-port", "0", "--alarm-silence-seconds", "1"],
    );
    let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
    let rosc::OscType::Int(http) = st[14] else { panic!("{st:?}") };
    let url = format!("http://127.0.0.1:{http}/");
    let b = Browser::start();
    b.goto(&url);
    // Soundcheck: idle, the meters move.
    b.wait_for(
        "the tone on in_1 and in_2 and silence on in_3 and in_4",
        r#"const v = {}; document.querySelectorAll('.m').forEach(m => v[m.dataset.input] = m.dataset.peak);
           const near = (x) => x !== undefined && Math.abs(parseFloat(x) + 20) <= 1;
           return near(v.in_1) && near(v.in_2) && v.in_3 === '-inf' && v.in_4 === '-inf'
               && document.getElementById('state').textContent === 'idle';"#,
    );
    let page = b.screenshot(&shots().join("web-idle.png"));
    assert!(colours(&page) > 8, "the page screenshot is blank");
    // Record, mark, stop, all from the page.
    b.click("#rec");
    b.wait_for("the take recording", "return document.getElementById('state').textContent === 'recording'");
    // A second into the take, the two silent inputs raise their alarms:
    // a line each, and their meters outlined.
    b.wait_for(
        "the silent inputs' alarms",
        r#"const lines = [...document.querySelectorAll('.alarm.silent')].map(a => a.dataset.input).sort();
           return lines.join() === 'in_3,in_4'
               && document.querySelectorAll('.m.silent').length === 2
               && !document.querySelector('.m[data-input="in_1"]').classList.contains('silent');"#,
    );
    b.js("document.getElementById('label').value = 'verse'; return true");
    b.click("#mark");
    b.wait_for(
        "the marker's answer",
        "return document.getElementById('message').textContent.includes('verse')",
    );
    b.screenshot(&shots().join("web-recording.png"));
    b.click("#stop");
    b.wait_for("the take stopped", "return document.getElementById('state').textContent === 'idle'");
    b.wait_for("the take in the list", "return document.querySelectorAll('#takes tr').length === 1");
    src.stop();
    // The take: its file holds the tone on 1-2 and digital silence on 3-4,
    // and its manifest the marker.
    let wav = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wav"))
        .expect("a take file");
    let m = capstan::manifest::Manifest::load(&capstan::manifest::Manifest::path(
        dir.path(),
        wav.file_stem().unwrap().to_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(m.state, capstan::manifest::TakeState::Complete);
    assert_eq!(m.markers.len(), 1);
    assert_eq!(m.markers[0].label, "verse");
    let silent: Vec<&str> = m
        .alarms
        .iter()
        .filter(|a| a.kind == capstan::vocab::AlarmKind::Silent)
        .filter_map(|a| a.input.as_deref())
        .collect();
    assert_eq!(silent, ["in_3", "in_4"], "{:?}", m.alarms);
    assert_eq!(m.clean, Some(m.gaps.is_empty()), "level alarms never make a take unclean; gaps do");
    assert!(m.markers[0].frame > 0 && m.markers[0].frame < m.frames, "{:?}", m.markers);
    let mut r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().channels, 4);
    let mut peak = [0f32; 4];
    let mut n = 0u64;
    for (i, s) in r.samples::<f32>().enumerate() {
        let s = s.unwrap();
        peak[i % 4] = peak[i % 4].max(s.abs());
        n += 1;
    }
    assert_eq!(n / 4, m.frames);
    assert!(m.frames > 24_000, "{} frames", m.frames);
    for (c, p) in peak.iter().enumerate().take(2) {
        let db = 20.0 * p.log10();
        assert!((db + 20.0).abs() < 0.01, "in_{}: {db} dBFS", c + 1);
    }
    assert_eq!(&peak[2..], &[0.0, 0.0], "the unconnected inputs are digital silence");
    // The take's picture, beside its files and named by its manifest; the
    // page shows it.
    let name = m.picture.as_deref().expect("the manifest names the picture");
    let png = std::fs::read(dir.path().join(name)).unwrap();
    std::fs::write(shots().join("take-picture.png"), &png).unwrap();
    assert!(colours(&png) > 3, "the picture is blank");
    b.wait_for(
        "the picture in the take list",
        "const i = document.querySelector('#takes img'); return !!i && i.complete && i.naturalWidth > 1000;",
    );
    drop(d);
}
