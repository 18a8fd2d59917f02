//! Fuzzes the webhook payload parser: any bytes either parse into a notification with alerts
//! or give a one-line error; a parsed notification survives its own serialization.
#![no_main]

use alertmanager_wechat::webhook::Notification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Notification::parse(data) {
        Ok(n) => {
            assert!(!n.alerts.is_empty());
            let again = serde_json::to_vec(&n).expect("a notification serializes");
            let back = Notification::parse(&again).expect("a serialized notification parses");
            assert_eq!(back.alerts.len(), n.alerts.len());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        }
    }
});
