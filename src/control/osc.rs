//! The OSC protocol (docs/osc-api.md): decoding commands and encoding
//! replies and feedback. Pure functions, no sockets.

use rosc::{OscMessage, OscPacket, OscType};

/// Error codes carried in `/error` and `/recording/error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    BadArgs = 1,
    UnknownPath = 2,
    Busy = 3,
    NotRecording = 4,
    Preflight = 5,
    File = 6,
    ErrorState = 7,
    Malformed = 8,
    Write = 9,
    JackGone = 10,
    DiskFull = 11,
    Config = 12,
    /// A table is full (markers of a take).
    Full = 13,
    /// A timetagged command was cancelled before its time.
    Cancelled = 14,
}

/// A refused command: code and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Start {
        take_id: Option<String>,
        file: Option<String>,
    },
    Stop {
        take_id: Option<String>,
    },
    /// Stop the running take and start the next one at the very next frame.
    Rotate {
        take_id: Option<String>,
        file: Option<String>,
    },
    Status {
        take_id: Option<String>,
    },
    /// A marker in the running take, at the frame the command was taken
    /// (or its bundle's timetag).
    Mark {
        label: Option<String>,
    },
    List,
    /// A page of the take's file paths, from this index on.
    Files(usize),
    Reset,
    Subscribe,
    Unsubscribe,
    /// `/recording/meters` pushes this many times a second (0: none).
    Meters(u32),
    /// Settings: read them all, or change one (marks an NSM session dirty).
    ConfigGet,
    ConfigPorts(u16),
    ConfigSampleFormat(crate::wav::SampleFormat),
    ConfigLayout(crate::vocab::Layout),
    ConfigFormat(crate::vocab::FileFormat),
    /// `/trigger/arm` (true) and `/trigger/disarm` (false).
    Arm(bool),
    /// A trigger setting (`/config/trigger`, `/config/rotate_every`, …).
    ConfigTrigger(TriggerSetting),
    ConfigPreroll(f64),
    /// `/config/alarm s:name f:value`: one alarm threshold.
    ConfigAlarm(String, f64),
    /// `/config/storage [s:json]`: the storage settings, or a change to
    /// them (see `Settings::with_storage`).
    ConfigStorage(Option<String>),
}

/// A trigger setting sent over OSC.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSetting {
    Trigger(Option<crate::vocab::Trigger>),
    RotateEvery(Option<String>),
    PostRoll(f64),
    Threshold(f64),
    Hold(f64),
}

/// Largest datagram we accept; anything bigger is refused unread.
pub const MAX_DATAGRAM: usize = 8192;

/// A message and its bundle's timetag (`None`: immediately).
pub type Timed = (OscMessage, Option<std::time::SystemTime>);

/// Decodes a datagram into messages (bundles are flattened).
pub fn decode(datagram: &[u8]) -> Result<Vec<OscMessage>, Refusal> {
    Ok(decode_timed(datagram)?.into_iter().map(|(m, _)| m).collect())
}

/// [`decode`], with each message's time: the timetag of the innermost
/// bundle around it, as system-clock time; `None` for a bare message or
/// the timetag "immediately".
pub fn decode_timed(datagram: &[u8]) -> Result<Vec<Timed>, Refusal> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(Refusal::new(
            Code::Malformed,
            format!("datagram of {} bytes is too large", datagram.len()),
        ));
    }
    let (rest, packet) = rosc::decoder::decode_udp(datagram)
        .map_err(|e| Refusal::new(Code::Malformed, format!("not an OSC packet: {e}")))?;
    // rosc is lenient: it drops an unclosed `[` with the arguments inside
    // it, ignores trailing bytes and non-zero padding. A packet is taken only
    // if it is exactly what it decodes to (its canonical encoding), so that
    // garbage can never turn into a command.
    if !rest.is_empty() || rosc::encoder::encode(&packet).ok().as_deref() != Some(datagram) {
        return Err(Refusal::new(Code::Malformed, "malformed OSC: type tags and arguments do not match"));
    }
    let mut out = Vec::new();
    flatten(packet, None, &mut out);
    Ok(out)
}

fn flatten(p: OscPacket, when: Option<std::time::SystemTime>, out: &mut Vec<Timed>) {
    match p {
        OscPacket::Message(m) => out.push((m, when)),
        OscPacket::Bundle(b) => {
            let when = timetag_time(b.timetag);
            b.content.into_iter().for_each(|p| flatten(p, when, out))
        }
    }
}

/// Seconds from the OSC (NTP) epoch, 1900-01-01, to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A timetag as system-clock time; `None` means "now": the immediate
/// timetag (0, 1) of OSC 1.0 and any time before the Unix epoch (rosc's
/// own conversion panics there, which any sender could trigger).
pub fn timetag_time(t: rosc::OscTime) -> Option<std::time::SystemTime> {
    let since_unix = u64::from(t.seconds).checked_sub(NTP_UNIX_OFFSET)?;
    // fractional / 2^32 of a second, in nanoseconds (always < 1e9).
    let nanos = ((u64::from(t.fractional) * 1_000_000_000) >> 32) as u32;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(since_unix, nanos))
}

/// Optional string arguments: strings, or integers (SuperCollider sends ids
/// as ints), nothing else.
fn strings(m: &OscMessage, max: usize) -> Result<Vec<String>, Refusal> {
    if m.args.len() > max {
        return Err(Refusal::new(
            Code::BadArgs,
            format!("{} takes at most {max} arguments, got {}", m.addr, m.args.len()),
        ));
    }
    m.args
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            OscType::String(s) if !s.is_empty() => Ok(s.clone()),
            OscType::Int(v) => Ok(v.to_string()),
            OscType::Long(v) => Ok(v.to_string()),
            other => Err(Refusal::new(
                Code::BadArgs,
                format!("{} argument {} must be a non-empty string, got {other:?}", m.addr, i + 1),
            )),
        })
        .collect()
}

/// Exactly one numeric argument (int, int64, float or double).
fn number(m: &OscMessage) -> Result<f64, Refusal> {
    match m.args.as_slice() {
        [OscType::Int(v)] => Ok(*v as f64),
        [OscType::Long(v)] => Ok(*v as f64),
        [OscType::Float(v)] if v.is_finite() => Ok(*v as f64),
        [OscType::Double(v)] if v.is_finite() => Ok(*v),
        _ => Err(Refusal::new(Code::BadArgs, format!("{} takes one number", m.addr))),
    }
}

/// Exactly one string argument.
fn one_string(m: &OscMessage) -> Result<String, Refusal> {
    match m.args.as_slice() {
        [OscType::String(v)] => Ok(v.clone()),
        _ => Err(Refusal::new(Code::BadArgs, format!("{} takes one string", m.addr))),
    }
}

/// Interprets one message.
pub fn parse(m: &OscMessage) -> Result<Command, Refusal> {
    let none = |m: &OscMessage| -> Result<(), Refusal> {
        if m.args.is_empty() {
            Ok(())
        } else {
            Err(Refusal::new(Code::BadArgs, format!("{} takes no arguments", m.addr)))
        }
    };
    Ok(match m.addr.as_str() {
        "/record/start" | "/jack_capture/tm/start" => {
            let mut a = strings(m, 2)?.into_iter();
            Command::Start { take_id: a.next(), file: a.next() }
        }
        "/record/rotate" => {
            let mut a = strings(m, 2)?.into_iter();
            Command::Rotate { take_id: a.next(), file: a.next() }
        }
        "/record/stop" | "/jack_capture/tm/stop" | "/jack_capture/stop" => {
            Command::Stop { take_id: strings(m, 1)?.into_iter().next() }
        }
        "/record/status" => Command::Status { take_id: strings(m, 1)?.into_iter().next() },
        "/record/list" => none(m).map(|_| Command::List)?,
        "/record/mark" => Command::Mark { label: strings(m, 1)?.into_iter().next() },
        "/trigger/arm" => none(m).map(|_| Command::Arm(true))?,
        "/trigger/disarm" => none(m).map(|_| Command::Arm(false))?,
        "/record/files" => match m.args.as_slice() {
            [] => Command::Files(0),
            _ => {
                let n = number(m)?;
                if n.fract() != 0.0 || !(0.0..=1e6).contains(&n) {
                    return Err(Refusal::new(Code::BadArgs, "/record/files takes an index from 0"));
                }
                Command::Files(n as usize)
            }
        },
        "/record/reset" => none(m).map(|_| Command::Reset)?,
        "/record/subscribe" => none(m).map(|_| Command::Subscribe)?,
        "/record/unsubscribe" => none(m).map(|_| Command::Unsubscribe)?,
        "/record/meters" => {
            match m.args.as_slice() {
                [] => Command::Meters(DEFAULT_METER_RATE),
                _ => {
                    let n = number(m)?;
                    if n.fract() != 0.0 || !(0.0..=MAX_METER_RATE as f64).contains(&n) {
                        return Err(Refusal::new(
                        Code::BadArgs,
                        format!("/record/meters takes a rate from 0 (off) to {MAX_METER_RATE} a second, got {n}"),
                    ));
                    }
                    Command::Meters(n as u32)
                }
            }
        }
        "/config/get" => none(m).map(|_| Command::ConfigGet)?,
        "/config/ports" => {
            // A count; its range is the settings' (`Settings::validate`).
            let n = number(m)?;
            if n.fract() != 0.0 || !(0.0..=u16::MAX as f64).contains(&n) {
                return Err(Refusal::new(
                    Code::BadArgs,
                    format!("/config/ports needs a whole number, got {n}"),
                ));
            }
            Command::ConfigPorts(n as u16)
        }
        "/config/preroll" => {
            // Finite (see `number`); its range is the settings'.
            Command::ConfigPreroll(number(m)?)
        }
        "/config/sample_format" => {
            let name = one_string(m)?;
            Command::ConfigSampleFormat(name.parse().map_err(|e: String| Refusal::new(Code::BadArgs, e))?)
        }
        "/config/trigger" => Command::ConfigTrigger(TriggerSetting::Trigger(
            match one_string(m)?.to_ascii_lowercase().as_str() {
                "transport" => Some(crate::vocab::Trigger::Transport),
                "level" => Some(crate::vocab::Trigger::Level),
                "none" | "" => None,
                other => {
                    return Err(Refusal::new(
                        Code::BadArgs,
                        format!("/config/trigger needs transport, level or none, got {other:?}"),
                    ))
                }
            },
        )),
        "/config/rotate_every" => Command::ConfigTrigger(TriggerSetting::RotateEvery(
            Some(one_string(m)?).filter(|d| !d.is_empty() && !d.eq_ignore_ascii_case("off")),
        )),
        "/config/storage" => match m.args.as_slice() {
            [] => Command::ConfigStorage(None),
            _ => Command::ConfigStorage(Some(one_string(m)?)),
        },
        "/config/post_roll" => Command::ConfigTrigger(TriggerSetting::PostRoll(number(m)?)),
        "/config/threshold" => Command::ConfigTrigger(TriggerSetting::Threshold(number(m)?)),
        "/config/hold" => Command::ConfigTrigger(TriggerSetting::Hold(number(m)?)),
        "/config/alarm" => {
            let bad = || {
                Refusal::new(
                    Code::BadArgs,
                    format!(
                        "/config/alarm takes a name ({}) and a number",
                        super::alarms::SETTING_NAMES.join(", ")
                    ),
                )
            };
            match m.args.as_slice() {
                [OscType::String(name), v] => {
                    let value = number(&OscMessage { addr: m.addr.clone(), args: vec![v.clone()] })
                        .map_err(|_| bad())?;
                    if !super::alarms::SETTING_NAMES.contains(&name.as_str()) {
                        return Err(bad());
                    }
                    Command::ConfigAlarm(name.clone(), value)
                }
                _ => return Err(bad()),
            }
        }
        "/config/format" => match one_string(m)?.to_ascii_lowercase().as_str() {
            "wav" => Command::ConfigFormat(crate::vocab::FileFormat::Wav),
            "flac" => Command::ConfigFormat(crate::vocab::FileFormat::Flac),
            other => {
                return Err(Refusal::new(
                    Code::BadArgs,
                    format!("/config/format needs wav or flac, got {other:?}"),
                ))
            }
        },
        "/config/layout" => match one_string(m)?.to_ascii_lowercase().as_str() {
            "interleaved" => Command::ConfigLayout(crate::vocab::Layout::Interleaved),
            "mono" => Command::ConfigLayout(crate::vocab::Layout::Mono),
            other => {
                return Err(Refusal::new(
                    Code::BadArgs,
                    format!("unknown layout {other:?} (use interleaved or mono)"),
                ))
            }
        },
        other => return Err(Refusal::new(Code::UnknownPath, format!("unknown path {other:?}"))),
    })
}

/// A wait for a datagram ended without one: its timeout passed, or a
/// signal (Ctrl-C, SIGTERM) interrupted it. The caller looks again, or at
/// its stop flag.
pub fn no_datagram(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
    )
}

/// `/record/meters` without a rate: pushes a second.
pub const DEFAULT_METER_RATE: u32 = 10;
/// The most meter pushes a second (the meters measure 25 windows a second).
pub const MAX_METER_RATE: u32 = 25;
/// The meter feed's push: one float per input (peak dBFS, -inf for
/// silence), then a string of `0`/`1`, one per input (clipped in the last
/// 2 s). Its length follows the inputs, so it has no fixed schema.
pub const METERS_PUSH: &str = "/recording/meters";

/// Encodes a message; only fails on strings with NUL bytes, which we never
/// build, so the error is folded into an empty datagram.
pub fn encode(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: addr.into(), args })).unwrap_or_default()
}

/// `/reply s:path …`. Debug builds check the values against
/// [`super::replies::REPLIES`].
pub fn reply(path: &str, mut args: Vec<OscType>) -> Vec<u8> {
    if let Some(fields) = super::replies::reply_fields(path) {
        debug_assert!(super::replies::conforms(fields, &args), "reply to {path} breaks its schema: {args:?}");
    }
    args.insert(0, OscType::String(path.into()));
    encode("/reply", args)
}

/// A pushed message (`/recording/…`). Debug builds check the values against
/// [`super::replies::PUSHES`].
pub fn push(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    debug_assert!(
        addr == METERS_PUSH
            || super::replies::PUSHES.iter().any(|(p, f)| *p == addr && super::replies::conforms(f, &args)),
        "push {addr} breaks its schema: {args:?}"
    );
    encode(addr, args)
}

/// `/error s:path i:code s:message`, bounded: the echoed path and the
/// message are cut to [`MAX_ECHO`] bytes, so bad input never draws a reply
/// larger than itself.
pub fn error(path: &str, r: &Refusal) -> Vec<u8> {
    encode(
        "/error",
        vec![
            OscType::String(clip(path, MAX_ECHO).into()),
            OscType::Int(r.code as i32),
            OscType::String(clip(&r.message, 2 * MAX_ECHO).into()),
        ],
    )
}

/// The longest list of file paths a reply carries; a longer one is given
/// as a count and the directory (see [`files_text`]).
pub const MAX_FILES_TEXT: usize = 1024;

/// The `files` value of a reply: the comma-separated paths while they fit
/// in [`MAX_FILES_TEXT`] bytes, else `"N files in DIR (/record/files lists
/// them)"`, so that every reply fits in one datagram.
pub fn files_text(files: &[String]) -> String {
    let joined = files.join(",");
    if joined.len() <= MAX_FILES_TEXT {
        return joined;
    }
    let dir = std::path::Path::new(&files[0]).parent().map(|d| d.display().to_string()).unwrap_or_default();
    format!("{} files in {} (/record/files lists them)", files.len(), clip(&dir, MAX_FILES_TEXT - 64))
}

/// One page of `files` from `offset` on: as many whole paths as fit in
/// [`MAX_FILES_TEXT`] bytes (at least one), comma-separated.
pub fn files_page(files: &[String], offset: usize) -> String {
    let mut page = String::new();
    for f in files.iter().skip(offset) {
        if !page.is_empty() && page.len() + 1 + f.len() > MAX_FILES_TEXT {
            break;
        }
        if !page.is_empty() {
            page.push(',');
        }
        page.push_str(f);
    }
    page
}

/// How much of a client's text an error reply (or a log line) echoes.
pub const MAX_ECHO: usize = 96;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// What rosc alone would have accepted: an unclosed `[` (its arguments
    /// silently lost), trailing bytes, non-zero padding. None is a command.
    #[test]
    fn only_exactly_encoded_packets_are_commands() {
        let bad = [
            [pad(b"/record/start"), pad(b",[s"), pad(b"x")].concat(),
            [pad(b"/config/preroll"), pad(b",[")].concat(),
            [pad(b"/record/start"), pad(b","), vec![1, 2, 3, 4]].concat(),
            [b"/record/start\0\x01\x02".to_vec(), pad(b",")].concat(),
            pad(b"/record/start"),
        ];
        for d in bad {
            assert_eq!(decode(&d).unwrap_err().code, Code::Malformed, "{d:?}");
        }
        assert!(decode(&[pad(b"/record/start"), pad(b",")].concat()).is_ok());
        // A bundle of good messages is fine; with a bad one inside, not.
        let good = encode("/record/status", vec![]);
        let bundle = |inner: &[u8]| {
            let mut b = pad(b"#bundle");
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            b.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            b.extend_from_slice(inner);
            b
        };
        assert_eq!(decode(&bundle(&good)).unwrap().len(), 1);
        let unclosed = [pad(b"/record/start"), pad(b",[s"), pad(b"x")].concat();
        assert!(decode(&bundle(&unclosed)).is_err());
    }

    #[test]
    fn long_file_lists_fit_in_a_datagram_and_page_exactly() {
        let files: Vec<String> =
            (1..=1024).map(|i| format!("/srv/rec/takes/gig_20261126_201500_001_v1_in_{i}.wav")).collect();
        let text = files_text(&files);
        assert_eq!(text, "1024 files in /srv/rec/takes (/record/files lists them)");
        assert_eq!(files_text(&files[..3]), files[..3].join(","));
        let mut all = Vec::new();
        let mut at = 0;
        while at < files.len() {
            let page = files_page(&files, at);
            assert!(page.len() <= MAX_FILES_TEXT);
            let got: Vec<String> = page.split(',').map(str::to_owned).collect();
            at += got.len();
            all.extend(got);
        }
        assert_eq!(all, files);
        assert_eq!(files_page(&files, 5000), "");
        // Every reply stays far below one datagram, whatever the client sent.
        let r = Refusal::new(Code::BadArgs, "x".repeat(60_000));
        assert!(error(&"/p".repeat(4000), &r).len() < 512);
        assert_eq!(one(&msg("/record/files", vec![OscType::Int(7)])).unwrap(), Command::Files(7));
        assert_eq!(one(&msg("/record/files", vec![OscType::Int(-1)])).unwrap_err().code, Code::BadArgs);
    }

    /// Random garbage and random damage to real commands: decoding never
    /// panics, and whatever is accepted is the exact encoding of a message.
    #[test]
    fn random_damage_never_becomes_a_command_silently() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let seeds = [
            encode("/record/start", vec![OscType::String("take".into())]),
            encode("/config/preroll", vec![OscType::Float(2.0)]),
            encode("/record/stop", vec![]),
        ];
        for i in 0..100_000 {
            let mut d = seeds[i % 3].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % d.len();
                d[at] = next() as u8;
            }
            if next() % 4 == 0 {
                d.truncate((next() as usize) % (d.len() + 1));
            }
            if let Ok(ms) = decode(&d) {
                assert_eq!(ms.len(), 1);
                let again = encode(&ms[0].addr, ms[0].args.clone());
                assert_eq!(again, d, "accepted a datagram that is not its message's encoding");
            }
        }
    }

    fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
        encode(addr, args)
    }

    fn one(datagram: &[u8]) -> Result<Command, Refusal> {
        let ms = decode(datagram)?;
        parse(&ms[0])
    }

    #[test]
    fn parses_every_command_and_alias() {
        let s = |v: &str| OscType::String(v.into());
        assert_eq!(one(&msg("/record/start", vec![])).unwrap(), Command::Start { take_id: None, file: None });
        assert_eq!(
            one(&msg("/record/start", vec![s("take-a"), s("kick.wav")])).unwrap(),
            Command::Start { take_id: Some("take-a".into()), file: Some("kick.wav".into()) }
        );
        assert_eq!(
            one(&msg("/record/start", vec![OscType::Int(7)])).unwrap(),
            Command::Start { take_id: Some("7".into()), file: None }
        );
        assert_eq!(
            one(&msg("/jack_capture/tm/start", vec![])).unwrap(),
            Command::Start { take_id: None, file: None }
        );
        for stop in ["/record/stop", "/jack_capture/tm/stop", "/jack_capture/stop"] {
            assert_eq!(one(&msg(stop, vec![])).unwrap(), Command::Stop { take_id: None });
        }
        assert_eq!(one(&msg("/record/list", vec![])).unwrap(), Command::List);
        assert_eq!(one(&msg("/record/reset", vec![])).unwrap(), Command::Reset);
        assert_eq!(
            one(&msg("/record/status", vec![s("x")])).unwrap(),
            Command::Status { take_id: Some("x".into()) }
        );
        assert_eq!(
            one(&msg("/record/rotate", vec![])).unwrap(),
            Command::Rotate { take_id: None, file: None }
        );
    }

    #[test]
    fn refuses_bad_input_with_codes() {
        let code = |d: &[u8]| one(d).unwrap_err().code;
        assert_eq!(code(&msg("/record/start", vec![OscType::Float(1.0)])), Code::BadArgs);
        assert_eq!(code(&msg("/record/start", vec![OscType::String("".into())])), Code::BadArgs);
        assert_eq!(code(&msg("/record/list", vec![OscType::Int(1)])), Code::BadArgs);
        let three = vec![OscType::String("a".into()); 3];
        assert_eq!(code(&msg("/record/start", three)), Code::BadArgs);
        assert_eq!(code(&msg("/record/explode", vec![])), Code::UnknownPath);
        assert_eq!(code(b"garbage\0"), Code::Malformed);
        assert_eq!(code(&[0u8; 3]), Code::Malformed);
        assert_eq!(code(&vec![b'/'; MAX_DATAGRAM + 1]), Code::Malformed);
    }

    #[test]
    fn parses_and_checks_config_commands() {
        use crate::{vocab::Layout, wav::SampleFormat};
        let s = |v: &str| OscType::String(v.into());
        assert_eq!(one(&msg("/config/get", vec![])).unwrap(), Command::ConfigGet);
        assert_eq!(one(&msg("/config/ports", vec![OscType::Int(24)])).unwrap(), Command::ConfigPorts(24));
        assert_eq!(one(&msg("/config/ports", vec![OscType::Float(8.0)])).unwrap(), Command::ConfigPorts(8));
        assert_eq!(
            one(&msg("/config/sample_format", vec![s("s24")])).unwrap(),
            Command::ConfigSampleFormat(SampleFormat::S24)
        );
        assert_eq!(
            one(&msg("/config/layout", vec![s("Mono")])).unwrap(),
            Command::ConfigLayout(Layout::Mono)
        );
        assert_eq!(
            one(&msg("/config/format", vec![s("FLAC")])).unwrap(),
            Command::ConfigFormat(crate::vocab::FileFormat::Flac)
        );
        assert_eq!(
            one(&msg("/config/preroll", vec![OscType::Double(2.5)])).unwrap(),
            Command::ConfigPreroll(2.5)
        );
        let code = |d: &[u8]| one(d).unwrap_err().code;
        for bad in [
            msg("/config/ports", vec![OscType::Int(-1)]),
            msg("/config/ports", vec![OscType::Int(70_000)]),
            msg("/config/ports", vec![OscType::Float(2.5)]),
            msg("/config/ports", vec![s("24")]),
            msg("/config/ports", vec![]),
            msg("/config/preroll", vec![OscType::Float(f32::NAN)]),
            msg("/config/preroll", vec![OscType::Double(f64::INFINITY)]),
            msg("/config/sample_format", vec![s("mp3")]),
            msg("/config/layout", vec![s("stereo")]),
            msg("/config/format", vec![s("mp3")]),
            msg("/config/get", vec![OscType::Int(1)]),
        ] {
            assert_eq!(code(&bad), Code::BadArgs);
        }
    }

    #[test]
    fn bundles_are_flattened() {
        let inner = OscPacket::Message(OscMessage { addr: "/record/stop".into(), args: vec![] });
        let b = OscPacket::Bundle(rosc::OscBundle {
            timetag: rosc::OscTime { seconds: 0, fractional: 1 },
            content: vec![inner.clone(), inner],
        });
        let d = rosc::encoder::encode(&b).unwrap();
        assert_eq!(decode(&d).unwrap().len(), 2);
        assert!(decode_timed(&d).unwrap().iter().all(|(_, t)| t.is_none()), "immediately");
    }

    /// The hand-made bundle in docs/osc-api.md ("Timetags") is accepted,
    /// with its time.
    #[test]
    fn the_documented_hand_made_bundle_decodes() {
        let mut b = b"#bundle\0".to_vec();
        let t: u64 = 1_795_700_000 + 2_208_988_800;
        b.extend_from_slice(&(t as u32).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        let msg = b"/record/start\0\0\0,\0\0\0";
        b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        b.extend_from_slice(msg);
        let got = decode_timed(&b).unwrap();
        assert_eq!(parse(&got[0].0).unwrap(), Command::Start { take_id: None, file: None });
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_700_000);
        assert_eq!(got[0].1, Some(when));
    }

    /// A bundle's timetag reaches every message in it (the innermost
    /// bundle's), as system-clock time; a bare message has none.
    #[test]
    fn timetags_come_with_their_messages() {
        let mark = OscPacket::Message(OscMessage { addr: "/record/mark".into(), args: vec![] });
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_700_000_250);
        let b = OscPacket::Bundle(rosc::OscBundle {
            timetag: when.try_into().unwrap(),
            content: vec![mark.clone()],
        });
        let got = decode_timed(&rosc::encoder::encode(&b).unwrap()).unwrap();
        let t = got[0].1.expect("timetag");
        let diff = t.duration_since(when).unwrap_or_else(|e| e.duration());
        assert!(diff < std::time::Duration::from_micros(1), "{diff:?}");
        assert_eq!(parse(&got[0].0).unwrap(), Command::Mark { label: None });
        let bare = decode_timed(&rosc::encoder::encode(&mark).unwrap()).unwrap();
        assert_eq!(bare[0].1, None);
        let labelled = msg("/record/mark", vec![OscType::String("chorus".into())]);
        assert_eq!(one(&labelled).unwrap(), Command::Mark { label: Some("chorus".into()) });
        assert_eq!(one(&msg("/record/mark", vec![OscType::Float(1.0)])).unwrap_err().code, Code::BadArgs);
    }

    /// Timetags before the Unix epoch (0.0, 1.0: rosc's own conversion
    /// panicked on them, killing the daemon from one datagram) and the
    /// immediate one mean "now"; later ones are exact.
    #[test]
    fn timetags_before_1970_mean_now() {
        let t = |seconds, fractional| timetag_time(rosc::OscTime { seconds, fractional });
        assert_eq!(t(0, 0), None);
        assert_eq!(t(1, 0), None);
        assert_eq!(t(0, 1), None);
        assert_eq!(t(2_208_988_799, u32::MAX), None);
        assert_eq!(t(2_208_988_800, 0), Some(std::time::UNIX_EPOCH));
        let max = t(u32::MAX, u32::MAX).unwrap();
        let d = max.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), u64::from(u32::MAX) - 2_208_988_800);
        assert!(d.subsec_nanos() < 1_000_000_000);
        for tag in [(0u32, 0u32), (1, 0)] {
            let b = OscPacket::Bundle(rosc::OscBundle {
                timetag: rosc::OscTime { seconds: tag.0, fractional: tag.1 },
                content: vec![OscPacket::Message(OscMessage { addr: "/record/status".into(), args: vec![] })],
            });
            let got = decode_timed(&rosc::encoder::encode(&b).unwrap()).unwrap();
            assert_eq!(got[0].1, None, "{tag:?}");
        }
    }

    /// Fuzz: random bundles (nested, random timetags, random messages) and
    /// random bytes after a bundle header never panic the decoder; every
    /// timetag comes out as "now" or a time after 1970.
    #[test]
    fn random_bundles_with_random_timetags_never_panic() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
        fn packet(next: &mut dyn FnMut() -> u64, depth: u32) -> OscPacket {
            if depth > 3 || next() % 3 == 0 {
                let addr = ["/record/start", "/record/stop", "/record/mark", "/record/status", "/x"]
                    [(next() % 5) as usize];
                let args = (0..next() % 3).map(|_| OscType::Int(next() as i32)).collect();
                return OscPacket::Message(OscMessage { addr: addr.into(), args });
            }
            let r = next();
            let timetag = rosc::OscTime { seconds: (r >> 32) as u32, fractional: r as u32 };
            let content = (0..next() % 4).map(|_| packet(next, depth + 1)).collect();
            OscPacket::Bundle(rosc::OscBundle { timetag, content })
        }
        for _ in 0..20_000 {
            let p = packet(&mut next, 0);
            let d = rosc::encoder::encode(&p).unwrap();
            if let Ok(got) = decode_timed(&d) {
                for (m, when) in got {
                    let _ = parse(&m);
                    assert!(when.is_none_or(|t| t >= std::time::UNIX_EPOCH));
                }
            }
            // The same bytes with random damage after the bundle header.
            let mut d = d;
            for _ in 0..next() % 4 {
                let i = (next() as usize) % d.len();
                d[i] = next() as u8;
            }
            if let Ok(got) = decode_timed(&d) {
                got.iter().for_each(|(m, _)| drop(parse(m)));
            }
        }
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let (_, p) =
            rosc::decoder::decode_udp(&error("/record/start", &Refusal::new(Code::Busy, "busy"))).unwrap();
        let OscPacket::Message(m) = p else { panic!() };
        assert_eq!(m.addr, "/error");
        assert_eq!(
            m.args,
            vec![OscType::String("/record/start".into()), OscType::Int(3), OscType::String("busy".into())]
        );
    }
}
