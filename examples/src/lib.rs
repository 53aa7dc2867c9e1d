//! iolite-examples holds the demo site (`examples/site`, what `iolite serve`
//! serves by default), the example modules and CGI scripts, and cluster
//! set-ups. Every example runs with one command, written on its first doc line.
#![forbid(unsafe_code)]
