//! Lower bounds of filters (`after`), for stores that merge filters before
//! they query: `None` is no bound (every position), `Some(p)` is "strictly
//! after `p`".
//!
//! ```
//! use sourcery_core::store::after;
//!
//! assert_eq!(after::looser(Some(3), Some(7)), Some(3));
//! assert_eq!(after::looser(Some(3), None), None);
//! assert!(after::covers(Some(3), Some(7)));
//! assert!(!after::covers(Some(7), None));
//! ```

/// The looser of two bounds: a branch that selects what either selects.
/// No bound is the loosest of all.
#[must_use]
pub fn looser<Pos: Ord>(a: Option<Pos>, b: Option<Pos>) -> Option<Pos> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    }
}

/// Whether a branch that selects everything after `cover` already selects
/// everything after `covered_from`.
#[must_use]
pub fn covers<Pos: Ord>(cover: Option<Pos>, covered_from: Option<Pos>) -> bool {
    match (cover, covered_from) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(cover), Some(from)) => cover <= from,
    }
}
