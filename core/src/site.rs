//! [`Site`]: the static files as the content phase's fallback, asked when
//! no mount answers. It serves the document root, and under each
//! `[[location]]` the location's settings: its own root (the prefix
//! stripped), index files, response headers and cache use. The location
//! is the one the phases found for the request (the longest prefix).

use crate::error::Error;
use crate::handler::{Handler, Outcome, RequestCtx};
use crate::static_files::StaticFiles;

/// The document root and the locations' views of it.
#[derive(Debug)]
pub struct Site {
    root: StaticFiles,
    /// A view per location, by its prefix.
    by_location: Vec<(String, StaticFiles)>,
}

impl Site {
    /// Serves `root`, and `by_location`'s view under each location prefix.
    pub fn new(root: StaticFiles, by_location: Vec<(String, StaticFiles)>) -> Site {
        Site { root, by_location }
    }
}

impl Handler for Site {
    fn name(&self) -> &'static str {
        "static"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let files = req
            .location
            .and_then(|l| self.by_location.iter().find(|(p, _)| *p == l.prefix))
            .map_or(&self.root, |(_, files)| files);
        files.handle(req)
    }
}
