//! Fuzzes the matcher parser (`name op "value"`): no panic, errors name the matcher, and a
//! parsed matcher can be evaluated.
#![no_main]

use std::collections::BTreeMap;

use alertmanager_wechat::route::Matcher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match Matcher::parse(input) {
        Ok(m) => {
            let labels: BTreeMap<String, String> =
                [(m.name.clone(), m.value.clone())].into_iter().collect();
            let _ = m.matches(&labels);
            let _ = m.matches(&BTreeMap::new());
        }
        Err(e) => assert!(e.to_string().starts_with("matcher "), "{e}"),
    }
});
