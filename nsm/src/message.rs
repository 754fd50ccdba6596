//! Every NSM message as a Rust value, with exact encoding and strict
//! decoding (wrong address, argument count or type tags are rejected).

use rosc::{OscMessage, OscPacket, OscType};

/// NSM error codes (API 1.1, "Error Code Definitions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    General,
    IncompatibleApi,
    Blacklisted,
    LaunchFailed,
    NoSuchFile,
    NoSessionOpen,
    UnsavedChanges,
    NotNow,
    BadProject,
    CreateFailed,
    /// A code this crate does not name (servers may add some).
    Other(i32),
}

impl ErrorCode {
    pub fn value(self) -> i32 {
        match self {
            Self::General => -1,
            Self::IncompatibleApi => -2,
            Self::Blacklisted => -3,
            Self::LaunchFailed => -4,
            Self::NoSuchFile => -5,
            Self::NoSessionOpen => -6,
            Self::UnsavedChanges => -7,
            Self::NotNow => -8,
            Self::BadProject => -9,
            Self::CreateFailed => -10,
            Self::Other(v) => v,
        }
    }

    pub fn from_value(v: i32) -> ErrorCode {
        match v {
            -1 => Self::General,
            -2 => Self::IncompatibleApi,
            -3 => Self::Blacklisted,
            -4 => Self::LaunchFailed,
            -5 => Self::NoSuchFile,
            -6 => Self::NoSessionOpen,
            -7 => Self::UnsavedChanges,
            -8 => Self::NotNow,
            -9 => Self::BadProject,
            -10 => Self::CreateFailed,
            v => Self::Other(v),
        }
    }
}

/// `/nsm/server/announce s:application_name s:capabilities
/// s:executable_name i:api_major i:api_minor i:pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub application_name: String,
    pub capabilities: String,
    pub executable_name: String,
    pub api_major: i32,
    pub api_minor: i32,
    pub pid: i32,
}

/// Messages a client sends to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Announce(Announce),
    /// `/reply s:path s:message` (to open or save).
    Reply {
        to: String,
        message: String,
    },
    /// `/error s:path i:code s:message`
    Error {
        to: String,
        code: ErrorCode,
        message: String,
    },
    IsDirty,
    IsClean,
    /// Priority 0-3, 3 most important.
    Message {
        priority: i32,
        text: String,
    },
    /// 0.0-1.0
    Progress(f32),
    Label(String),
    GuiIsHidden,
    GuiIsShown,
}

/// Messages the server sends to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `/reply s:path …strings` (the announce reply has three strings).
    Reply {
        to: String,
        args: Vec<String>,
    },
    Error {
        to: String,
        code: ErrorCode,
        message: String,
    },
    Open {
        path: String,
        display_name: String,
        client_id: String,
    },
    Save,
    SessionIsLoaded,
    ShowOptionalGui,
    HideOptionalGui,
}

/// Why a datagram is not a valid NSM message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an OSC message")]
    NotOsc,
    #[error("unknown NSM path {0}")]
    UnknownPath(String),
    #[error("{path} has type tags {got:?}, expected {want:?}")]
    BadTags { path: String, got: String, want: &'static str },
}

/// The OSC type tag of an argument.
pub fn tag(a: &OscType) -> char {
    match a {
        OscType::Int(_) => 'i',
        OscType::Float(_) => 'f',
        OscType::String(_) => 's',
        OscType::Long(_) => 'h',
        OscType::Double(_) => 'd',
        OscType::Blob(_) => 'b',
        OscType::Bool(true) => 'T',
        OscType::Bool(false) => 'F',
        _ => '?',
    }
}

pub fn encode(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: addr.into(), args })).unwrap_or_default()
}

fn decode_msg(datagram: &[u8]) -> Result<OscMessage, DecodeError> {
    match rosc::decoder::decode_udp(datagram) {
        Ok((_, OscPacket::Message(m))) => Ok(m),
        _ => Err(DecodeError::NotOsc),
    }
}

fn check(m: &OscMessage, want: &'static str) -> Result<(), DecodeError> {
    let got: String = m.args.iter().map(tag).collect();
    if got == want {
        Ok(())
    } else {
        Err(DecodeError::BadTags { path: m.addr.clone(), got, want })
    }
}

fn s(a: &OscType) -> String {
    match a {
        OscType::String(s) => s.clone(),
        _ => String::new(),
    }
}

fn i(a: &OscType) -> i32 {
    match a {
        OscType::Int(v) => *v,
        _ => 0,
    }
}

impl ClientMessage {
    pub fn encode(&self) -> Vec<u8> {
        use OscType::{Float, Int, String as S};
        match self {
            Self::Announce(Announce {
                application_name,
                capabilities,
                executable_name,
                api_major,
                api_minor,
                pid,
            }) => encode(
                "/nsm/server/announce",
                vec![
                    S(application_name.clone()),
                    S(capabilities.clone()),
                    S(executable_name.clone()),
                    Int(*api_major),
                    Int(*api_minor),
                    Int(*pid),
                ],
            ),
            Self::Reply { to, message } => encode("/reply", vec![S(to.clone()), S(message.clone())]),
            Self::Error { to, code, message } => {
                encode("/error", vec![S(to.clone()), Int(code.value()), S(message.clone())])
            }
            Self::IsDirty => encode("/nsm/client/is_dirty", vec![]),
            Self::IsClean => encode("/nsm/client/is_clean", vec![]),
            Self::Message { priority, text } => {
                encode("/nsm/client/message", vec![Int((*priority).clamp(0, 3)), S(text.clone())])
            }
            Self::Progress(p) => encode("/nsm/client/progress", vec![Float(p.clamp(0.0, 1.0))]),
            Self::Label(l) => encode("/nsm/client/label", vec![S(l.clone())]),
            Self::GuiIsHidden => encode("/nsm/client/gui_is_hidden", vec![]),
            Self::GuiIsShown => encode("/nsm/client/gui_is_shown", vec![]),
        }
    }

    /// Strict decoding, as a server (or a test server) needs it.
    pub fn decode(datagram: &[u8]) -> Result<ClientMessage, DecodeError> {
        let m = decode_msg(datagram)?;
        let a = &m.args;
        Ok(match m.addr.as_str() {
            "/nsm/server/announce" => {
                check(&m, "sssiii")?;
                Self::Announce(Announce {
                    application_name: s(&a[0]),
                    capabilities: s(&a[1]),
                    executable_name: s(&a[2]),
                    api_major: i(&a[3]),
                    api_minor: i(&a[4]),
                    pid: i(&a[5]),
                })
            }
            "/reply" => {
                check(&m, "ss")?;
                Self::Reply { to: s(&a[0]), message: s(&a[1]) }
            }
            "/error" => {
                check(&m, "sis")?;
                Self::Error { to: s(&a[0]), code: ErrorCode::from_value(i(&a[1])), message: s(&a[2]) }
            }
            "/nsm/client/is_dirty" => check(&m, "").map(|_| Self::IsDirty)?,
            "/nsm/client/is_clean" => check(&m, "").map(|_| Self::IsClean)?,
            "/nsm/client/message" => {
                check(&m, "is")?;
                Self::Message { priority: i(&a[0]), text: s(&a[1]) }
            }
            "/nsm/client/progress" => {
                check(&m, "f")?;
                let OscType::Float(p) = a[0] else { unreachable!("checked") };
                Self::Progress(p)
            }
            "/nsm/client/label" => {
                check(&m, "s")?;
                Self::Label(s(&a[0]))
            }
            "/nsm/client/gui_is_hidden" => check(&m, "").map(|_| Self::GuiIsHidden)?,
            "/nsm/client/gui_is_shown" => check(&m, "").map(|_| Self::GuiIsShown)?,
            other => return Err(DecodeError::UnknownPath(other.into())),
        })
    }
}

impl ServerMessage {
    pub fn encode(&self) -> Vec<u8> {
        use OscType::{Int, String as S};
        match self {
            Self::Reply { to, args } => {
                encode("/reply", std::iter::once(S(to.clone())).chain(args.iter().cloned().map(S)).collect())
            }
            Self::Error { to, code, message } => {
                encode("/error", vec![S(to.clone()), Int(code.value()), S(message.clone())])
            }
            Self::Open { path, display_name, client_id } => encode(
                "/nsm/client/open",
                vec![S(path.clone()), S(display_name.clone()), S(client_id.clone())],
            ),
            Self::Save => encode("/nsm/client/save", vec![]),
            Self::SessionIsLoaded => encode("/nsm/client/session_is_loaded", vec![]),
            Self::ShowOptionalGui => encode("/nsm/client/show_optional_gui", vec![]),
            Self::HideOptionalGui => encode("/nsm/client/hide_optional_gui", vec![]),
        }
    }

    /// Strict decoding of what a server sends.
    pub fn decode(datagram: &[u8]) -> Result<ServerMessage, DecodeError> {
        let m = decode_msg(datagram)?;
        let a = &m.args;
        Ok(match m.addr.as_str() {
            "/reply" => {
                let tags: String = a.iter().map(tag).collect();
                if tags.is_empty() || tags.chars().any(|c| c != 's') {
                    return Err(DecodeError::BadTags { path: m.addr, got: tags, want: "s…" });
                }
                Self::Reply { to: s(&a[0]), args: a[1..].iter().map(s).collect() }
            }
            "/error" => {
                check(&m, "sis")?;
                Self::Error { to: s(&a[0]), code: ErrorCode::from_value(i(&a[1])), message: s(&a[2]) }
            }
            "/nsm/client/open" => {
                check(&m, "sss")?;
                Self::Open { path: s(&a[0]), display_name: s(&a[1]), client_id: s(&a[2]) }
            }
            "/nsm/client/save" => check(&m, "").map(|_| Self::Save)?,
            "/nsm/client/session_is_loaded" => check(&m, "").map(|_| Self::SessionIsLoaded)?,
            "/nsm/client/show_optional_gui" => check(&m, "").map(|_| Self::ShowOptionalGui)?,
            "/nsm/client/hide_optional_gui" => check(&m, "").map(|_| Self::HideOptionalGui)?,
            other => return Err(DecodeError::UnknownPath(other.into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_message_round_trips_with_the_documented_tags() {
        let all = vec![
            (
                ClientMessage::Announce(Announce {
                    application_name: "capstan".into(),
                    capabilities: ":dirty:message:progress:".into(),
                    executable_name: "capstan".into(),
                    api_major: 1,
                    api_minor: 1,
                    pid: 42,
                }),
                "/nsm/server/announce",
                "sssiii",
            ),
            (ClientMessage::Reply { to: "/nsm/client/open".into(), message: "ok".into() }, "/reply", "ss"),
            (
                ClientMessage::Error {
                    to: "/nsm/client/open".into(),
                    code: ErrorCode::BadProject,
                    message: "x".into(),
                },
                "/error",
                "sis",
            ),
            (ClientMessage::IsDirty, "/nsm/client/is_dirty", ""),
            (ClientMessage::IsClean, "/nsm/client/is_clean", ""),
            (ClientMessage::Message { priority: 2, text: "disk full".into() }, "/nsm/client/message", "is"),
            (ClientMessage::Progress(0.5), "/nsm/client/progress", "f"),
            (ClientMessage::Label("REC 00:12:34".into()), "/nsm/client/label", "s"),
            (ClientMessage::GuiIsHidden, "/nsm/client/gui_is_hidden", ""),
            (ClientMessage::GuiIsShown, "/nsm/client/gui_is_shown", ""),
        ];
        for (msg, addr, tags) in all {
            let bytes = msg.encode();
            let m = decode_msg(&bytes).unwrap();
            assert_eq!(m.addr, addr);
            assert_eq!(m.args.iter().map(tag).collect::<String>(), tags, "{addr}");
            assert_eq!(ClientMessage::decode(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn every_server_message_round_trips() {
        let all = vec![
            ServerMessage::Reply {
                to: "/nsm/server/announce".into(),
                args: vec!["hi".into(), "nsmd".into(), ":server-control:".into()],
            },
            ServerMessage::Error {
                to: "/nsm/server/announce".into(),
                code: ErrorCode::Other(-42),
                message: "m".into(),
            },
            ServerMessage::Open {
                path: "/s/capstan.nABCD".into(),
                display_name: "s".into(),
                client_id: "capstan.nABCD".into(),
            },
            ServerMessage::Save,
            ServerMessage::SessionIsLoaded,
            ServerMessage::ShowOptionalGui,
            ServerMessage::HideOptionalGui,
        ];
        for msg in all {
            assert_eq!(ServerMessage::decode(&msg.encode()).unwrap(), msg);
        }
    }

    #[test]
    fn malformed_messages_are_rejected() {
        use OscType::{Float, Int, String as S};
        let bad_client = [
            encode("/nsm/server/announce", vec![S("a".into()), S("b".into()), S("c".into()), Int(1), Int(1)]),
            encode("/reply", vec![S("/x".into()), Int(0)]),
            encode("/error", vec![S("/x".into()), S("-1".into()), S("m".into())]),
            encode("/nsm/client/progress", vec![Int(1)]),
            encode("/nsm/client/message", vec![S("x".into()), Int(1)]),
            encode("/nsm/client/is_dirty", vec![Int(1)]),
            encode("/nsm/client/unheard_of", vec![]),
            b"junk".to_vec(),
        ];
        for b in bad_client {
            assert!(ClientMessage::decode(&b).is_err(), "{:?}", decode_msg(&b));
        }
        let bad_server = [
            encode("/nsm/client/open", vec![S("/p".into()), S("n".into())]),
            encode("/nsm/client/save", vec![Float(1.0)]),
            encode("/reply", vec![]),
            encode("/reply", vec![S("/x".into()), Int(3)]),
        ];
        for b in bad_server {
            assert!(ServerMessage::decode(&b).is_err());
        }
        assert_eq!(ErrorCode::from_value(-10), ErrorCode::CreateFailed);
        assert_eq!(ErrorCode::CreateFailed.value(), -10);
    }
}
