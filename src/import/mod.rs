//! Importing measurements made by other tools, so devices rooflinebench never ran on still get
//! their points on a roofline. Each importer parses a foreign format into plain records
//! (tolerant of versions, strict about malformed values) and maps them onto the cost model:
//! the work of every point is ours, only the time comes from the file.

pub mod llama_bench;
