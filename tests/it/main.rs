//! Integration tests: the real server on port 0 against mock upstreams.

mod support;

mod ingest;
mod render;
mod weixin_gateway;
mod wxpusher;
