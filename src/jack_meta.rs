//! JACK port metadata: the pretty names patchbays (Carla, qjackctl,
//! RaySession) show, read from the ports that feed ours and set on our own
//! inputs. Control thread only.
//!
//! The jack crate wraps the metadata API but gives no port's UUID, and its
//! `property_get` panics on a value that is not UTF-8 (any client can set
//! one), so the few calls are made here through `jack_sys` directly.

use std::ffi::{CStr, CString};

use jack::jack_sys as j;

/// JACK_METADATA_PRETTY_NAME.
pub const PRETTY_NAME: &str = "http://jackaudio.org/metadata/pretty-name";

/// The UUID of the port called `name`, if it exists.
fn port_uuid(client: &jack::Client, name: &str) -> Option<j::jack_uuid_t> {
    let cname = CString::new(name).ok()?;
    // SAFETY: the client pointer is valid for `client`'s lifetime, `cname`
    // is a NUL-terminated string that outlives the call, and the returned
    // port pointer is only passed straight back to libjack.
    let uuid = unsafe {
        let port = j::jack_port_by_name(client.raw(), cname.as_ptr());
        if port.is_null() {
            return None;
        }
        j::jack_port_uuid(port)
    };
    (uuid != 0).then_some(uuid)
}

/// The pretty name of the port called `name`, if one is set and not blank.
pub fn pretty_name(client: &jack::Client, name: &str) -> Option<String> {
    let uuid = port_uuid(client, name)?;
    let key = CString::new(PRETTY_NAME).expect("no NUL in the key");
    let mut value: *mut std::ffi::c_char = std::ptr::null_mut();
    let mut typ: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: `key` is NUL-terminated; on success libjack hands us `value`
    // (and maybe `typ`), NUL-terminated strings we own and free below with
    // jack_free, after copying `value`.
    let got = unsafe {
        if j::jack_get_property(uuid, key.as_ptr(), &mut value, &mut typ) != 0 || value.is_null() {
            return None;
        }
        let s = CStr::from_ptr(value).to_string_lossy().into_owned();
        j::jack_free(value.cast());
        if !typ.is_null() {
            j::jack_free(typ.cast());
        }
        s
    };
    let got: String = got.chars().filter(|c| !c.is_control()).take(128).collect();
    (!got.trim().is_empty()).then(|| got.trim().to_owned())
}

/// Sets the pretty name of our port called `name` (a failure is only
/// logged: names are a convenience, recording does not depend on them).
pub fn set_pretty_name(client: &jack::Client, name: &str, pretty: &str) {
    let Some(uuid) = port_uuid(client, name) else { return };
    if let Err(e) = client.property_set(uuid, PRETTY_NAME, &jack::Property::new(pretty, None)) {
        tracing::debug!("cannot set the pretty name of {name}: {e:?}");
    }
}
