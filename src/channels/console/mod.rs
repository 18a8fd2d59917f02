//! Prints rendered messages to standard output: the built-in default, and a way to see what a
//! configuration produces without any WeChat account.

use std::io::Write;

use serde_json::json;

use super::{Env, Outbound};
use crate::channels::error::DeliveryError;
use crate::text;
use crate::webhook::Notification;

#[derive(Debug)]
pub struct Console {
    /// Template name of the preview line.
    pub summary: String,
    /// Template name of the body.
    pub text: String,
    pub summary_max: usize,
}

impl Console {
    fn render(&self, env: &Env<'_>, n: &Notification) -> Result<String, DeliveryError> {
        let ctx = env.templates.context(n, env.now);
        let summary = text::truncate(
            &text::one_line(&env.templates.render(&self.summary, &ctx)?),
            self.summary_max,
        );
        let body = env.templates.render(&self.text, &ctx)?;
        Ok(format!("{summary}\n\n{}\n", body.trim_end()))
    }

    pub fn prepare(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Outbound>, DeliveryError> {
        Ok(vec![Outbound {
            method: "PRINT",
            url: "stdout".into(),
            body: json!(self.render(env, n)?),
        }])
    }

    pub fn send(&self, env: &Env<'_>, n: &Notification) -> Result<(), DeliveryError> {
        let rendered = self.render(env, n)?;
        let rule = "─".repeat(60);
        let mut out = std::io::stdout().lock();
        // Standard output going away (a closed pipe) is not worth retrying a console print for.
        let _ = write!(out, "{rule}\n{rendered}{rule}\n");
        let _ = out.flush();
        Ok(())
    }
}
