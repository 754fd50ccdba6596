//! The web server against a stand-in recorder (a UDP socket that answers
//! OSC as the daemon does), over real HTTP on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};

use super::*;
use crate::disk::meter::InputLevel;

/// Answers `/record/start` with a take and everything else with an error
/// (code 4), as the daemon would; returns its address.
fn fake_recorder() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok((_, rosc::OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else { continue };
            let answer = match m.addr.as_str() {
                "/record/start" => crate::control::osc::reply(
                    "/record/start",
                    vec![
                        rosc::OscType::String("t1".into()),
                        rosc::OscType::Double(4242.0),
                        rosc::OscType::String("/takes/t1.wav".into()),
                    ],
                ),
                p => crate::control::osc::error(
                    p,
                    &crate::control::osc::Refusal::new(
                        crate::control::osc::Code::NotRecording,
                        "no take is running",
                    ),
                ),
            };
            let _ = sock.send_to(&answer, from);
        }
    });
    addr
}

fn server(bind: &str) -> (WebServer, Arc<Board>) {
    let board = Arc::new(Board::default());
    let dir = tempfile::tempdir().unwrap().keep();
    let w = WebServer::start(bind, 0, board.clone(), fake_recorder(), dir).unwrap();
    (w, board)
}

/// One HTTP/1.1 request; returns the status code and the body.
fn http(w: &WebServer, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(w.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn host(w: &WebServer) -> String {
    format!("Host: 127.0.0.1:{}", w.addr().port())
}

#[test]
fn the_page_and_the_status_are_served_with_every_input() {
    let (w, board) = server("127.0.0.1");
    board.set_levels(
        &["kick".to_string(), "snare".to_string()],
        LevelSnapshot {
            windows: 7,
            inputs: vec![
                InputLevel { peak: 0.1, rms: 0.0707, clipped: false },
                InputLevel { peak: 0.0, rms: 0.0, clipped: true },
            ],
        },
    );
    board.set_status(Status {
        state: "idle".into(),
        free_bytes: 1000,
        bytes_per_second: 10,
        ..Default::default()
    });
    let (code, page) = http(&w, &format!("GET / HTTP/1.1\r\n{}", host(&w)), "");
    assert_eq!(code, 200);
    assert!(page.contains("<title>capstan</title>"));
    let (code, body) = http(&w, &format!("GET /api/status HTTP/1.1\r\n{}", host(&w)), "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["inputs"][0]["name"], "kick");
    assert_eq!(v["inputs"][0]["peak_dbfs"], -20.0);
    assert_eq!(v["inputs"][0]["rms_dbfs"], -23.0);
    assert_eq!(v["inputs"][1]["peak_dbfs"], serde_json::Value::Null, "silence");
    assert_eq!(v["inputs"][1]["clipped"], true);
    assert_eq!(v["seconds_left"], 100);
    assert_eq!(v["status"]["state"], "idle");
    assert_eq!(http(&w, &format!("GET /nothing HTTP/1.1\r\n{}", host(&w)), "").0, 404);
    assert_eq!(http(&w, &format!("DELETE /api/status HTTP/1.1\r\n{}", host(&w)), "").0, 405);
}

/// A press on the page is the OSC command, answered with the recorder's
/// values, or its refusal and code.
#[test]
fn commands_go_to_the_recorder_and_come_back_with_its_answer() {
    let (w, _) = server("127.0.0.1");
    let (code, body) = http(&w, &format!("POST /api/record/start HTTP/1.1\r\n{}", host(&w)), "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["ok"].as_bool(), v["take_id"].as_str()), (Some(true), Some("t1")));
    assert_eq!(v["first_frame_time"], 4242);
    let (code, body) = http(&w, &format!("POST /api/record/stop HTTP/1.1\r\n{}", host(&w)), "{}");
    assert_eq!(code, 409, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["code"].as_i64(), v["error"].as_str()), (Some(4), Some("no take is running")));
    // Garbage is a 4xx, and the server goes on.
    let (code, _) = http(&w, &format!("POST /api/record/mark HTTP/1.1\r\n{}", host(&w)), "[1,2");
    assert_eq!(code, 400);
    let mut s = TcpStream::connect(w.addr()).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    drop(s);
    assert_eq!(http(&w, &format!("GET /api/status HTTP/1.1\r\n{}", host(&w)), "").0, 200);
}

/// No other site's page can press record, and no foreign name can reach
/// the loopback page (DNS rebinding); off loopback, commands need the
/// token.
#[test]
fn other_sites_and_foreign_names_are_refused_and_the_network_needs_the_token() {
    let (w, _) = server("127.0.0.1");
    let port = w.addr().port();
    let origin = format!("POST /api/record/start HTTP/1.1\r\n{}\r\nOrigin: http://evil.example", host(&w));
    assert_eq!(http(&w, &origin, "").0, 403);
    let rebound = format!("POST /api/record/start HTTP/1.1\r\nHost: evil.example:{port}");
    assert_eq!(http(&w, &rebound, "").0, 403);
    let rebound_get = format!("GET /api/status HTTP/1.1\r\nHost: evil.example:{port}");
    assert_eq!(http(&w, &rebound_get, "").0, 403);
    let own = format!("POST /api/record/start HTTP/1.1\r\n{}\r\nOrigin: http://127.0.0.1:{port}", host(&w));
    assert_eq!(http(&w, &own, "").0, 200);
    let local = format!("POST /api/record/start HTTP/1.1\r\nHost: localhost:{port}");
    assert_eq!(http(&w, &local, "").0, 200);

    // Bound to every address: the token is in the URL and needed.
    let (w, _) = server("0.0.0.0");
    let url = w.url();
    let token = url.split("#token=").nth(1).expect("a token in the URL").to_string();
    assert_eq!(token.len(), 32);
    let h = format!("Host: 192.0.2.1:{}", w.addr().port());
    assert_eq!(http(&w, &format!("POST /api/record/start HTTP/1.1\r\n{h}"), "").0, 401);
    let wrong = format!("POST /api/record/start HTTP/1.1\r\n{h}\r\nAuthorization: Bearer {}", "0".repeat(32));
    assert_eq!(http(&w, &wrong, "").0, 401);
    let right = format!("POST /api/record/start HTTP/1.1\r\n{h}\r\nAuthorization: Bearer {token}");
    assert_eq!(http(&w, &right, "").0, 200);
    assert_eq!(http(&w, &format!("GET /api/status HTTP/1.1\r\n{h}"), "").0, 200, "reading needs no token");
}

/// The stream sends the levels as they change, many times a second.
#[test]
fn the_event_stream_sends_levels_as_they_change() {
    let (w, board) = server("127.0.0.1");
    board.set_levels(&["a".to_string()], LevelSnapshot { windows: 1, inputs: vec![InputLevel::default()] });
    let mut s = TcpStream::connect(w.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /api/events HTTP/1.1\r\n{}\r\n\r\n", host(&w)).unwrap();
    let mut r = BufReader::new(s);
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 10 {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let Some(json) = line.trim().strip_prefix("data: ") else { continue };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        seen.push(v["meter_windows"].as_u64().unwrap());
        let n = seen.len() as u64 + 1;
        board.set_levels(
            &["a".to_string()],
            LevelSnapshot { windows: n, inputs: vec![InputLevel::default()] },
        );
    }
    assert_eq!(seen.len(), 10);
    // Each event goes out as it is made (nothing holds it back in a
    // buffer), so it sees the levels set after the one before arrived.
    assert!(seen.windows(2).all(|p| p[1] > p[0]), "each event sees the newest levels: {seen:?}");
}
