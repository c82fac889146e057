//! Turning a set of [`EventFilter`]s into one `SELECT`.
//!
//! Filters are grouped before they become SQL, so that the statement stays
//! small and every branch is served by an index:
//!
//! - filters on one event kind across all streams merge by kind, keeping the
//!   smallest `after` (no `after` is smallest of all);
//! - filters on one stream merge by stream, and within it by `after`, into
//!   `aggregate_kind = $a AND aggregate_id = $b AND event_kind = ANY($c)`;
//! - whole-stream filters ([`EventFilter::for_stream`]) on one stream merge
//!   into one branch without an event kind, `aggregate_kind = $a AND
//!   aggregate_id = $b`, keeping the smallest `after`: the stream index
//!   `(aggregate_kind, aggregate_id, position)` serves it in position order;
//! - a stream filter that a kind filter or the stream's whole-stream filter
//!   already covers is dropped.
//!
//! The branches are OR-ed in one `WHERE`, so each event comes back once,
//! `ORDER BY position`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sourcery_core::store::after::{covers, looser};
use sourcery_core::store::{EventFilter, TextId};

use crate::Error;

/// The most binds one statement may carry (PostgreSQL's protocol limit).
const MAX_BINDS: usize = 65_535;

/// A value bound to the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Texts(Vec<String>),
    Position(i64),
}

/// One statement: the `WHERE` predicate (without the frontier), its binds,
/// and whether the load is cut at the safe frontier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) predicate: String,
    pub(crate) binds: Vec<Bind>,
    pub(crate) frontier: bool,
}

/// Stands for the schema-qualified events table in a predicate; the store
/// puts the table's name in its place.
pub(crate) const EVENTS: &str = "__SOURCERY_EVENTS__";

/// Plans the load of `filters`, or `None` when they select nothing.
///
/// `following` says the load is a follower's (cut at the frontier, its
/// cursor near the head of the log); otherwise a stream's tail after a
/// position is read through the stream's own sequence (see below).
pub(crate) fn plan<Id: TextId>(
    filters: &[EventFilter<Id, i64>],
    following: bool,
) -> Result<Option<Plan>, Error> {
    // event kind -> after, for filters across all streams.
    let mut kinds: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    // (aggregate kind, aggregate id) -> what is wanted of the stream.
    let mut streams: BTreeMap<(&str, String), Stream<'_>> = BTreeMap::new();
    let mut frontier = false;
    let mut any_after = false;
    for filter in filters {
        // Selects nothing (no store writes NUL), and the server would refuse
        // the parameter.
        if filter.holds_nul() {
            continue;
        }
        let after = filter.after_position();
        if let Some(position) = after {
            if position < 0 {
                return Err(Error::InvalidAfter { position });
            }
            any_after = true;
        }
        match (filter.aggregate(), filter.event_kind()) {
            (None, Some(event_kind)) => {
                frontier = true;
                kinds
                    .entry(event_kind)
                    .and_modify(|bound| *bound = looser(*bound, after))
                    .or_insert(after);
            }
            // `EventFilter`'s constructors give a filter without a stream a
            // kind; such a filter would select nothing.
            (None, None) => {}
            (Some((aggregate_kind, aggregate_id)), event_kind) => {
                let stream = streams
                    .entry((aggregate_kind, aggregate_id.to_text()))
                    .or_default();
                match event_kind {
                    None => {
                        let bound = stream.whole.map_or(after, |After(bound)| looser(bound, after));
                        stream.whole = Some(After(bound));
                    }
                    Some(event_kind) => {
                        stream
                            .kinds
                            .entry(event_kind)
                            .and_modify(|bound| *bound = looser(*bound, after))
                            .or_insert(after);
                    }
                }
            }
        }
    }

    // Filters with an `after` on several streams are a follower's: cut. On
    // one stream they are not: its writers draw positions under the stream's
    // lock, held until they commit, so its visible events are always a prefix
    // (the repository's read of the tail after a snapshot sees its writes).
    frontier = frontier || (any_after && streams.len() > 1);

    let mut sql = Sql::default();
    // Kind branches, grouped by `after`: kinds with the same bound share one.
    let mut by_after: BTreeMap<Option<i64>, Vec<&str>> = BTreeMap::new();
    for (&kind, &after) in &kinds {
        by_after.entry(after).or_default().push(kind);
    }
    for (after, kinds) in by_after {
        sql.branch();
        sql.kinds(&kinds);
        sql.after(after);
        sql.close();
    }
    for ((aggregate_kind, aggregate_id), wanted) in streams {
        if let Some(After(after)) = wanted.whole {
            // The whole stream: no event kind, so the stream index serves
            // it alone, in position order.
            sql.branch();
            let (kind_bind, id_bind) = sql.stream(aggregate_kind, &aggregate_id);
            sql.stream_after(after, following, kind_bind, id_bind);
            sql.close();
        }
        let mut by_after: BTreeMap<Option<i64>, Vec<&str>> = BTreeMap::new();
        for (kind, after) in wanted.kinds {
            let covered = kinds.get(kind).is_some_and(|&cover| covers(cover, after))
                || wanted.whole.is_some_and(|After(cover)| covers(cover, after));
            if !covered {
                by_after.entry(after).or_default().push(kind);
            }
        }
        for (after, kinds) in by_after {
            sql.branch();
            let (kind_bind, id_bind) = sql.stream(aggregate_kind, &aggregate_id);
            sql.predicate.push_str(" AND ");
            sql.kinds(&kinds);
            sql.stream_after(after, following, kind_bind, id_bind);
            sql.close();
        }
    }
    if sql.branches == 0 {
        return Ok(None);
    }
    if sql.binds.len() > MAX_BINDS {
        return Err(Error::TooManyFilters {
            count: sql.binds.len(),
            max: MAX_BINDS,
        });
    }
    Ok(Some(Plan {
        predicate: sql.predicate,
        binds: sql.binds,
        frontier,
    }))
}

/// A lower bound on positions: the events strictly after it; `None`, every
/// event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct After(Option<i64>);

/// What the filters on one stream want of it.
#[derive(Debug, Default)]
struct Stream<'a> {
    /// Every event of the stream after this bound (the whole-stream
    /// filters' loosest), or `None` when no filter wants the whole stream.
    whole: Option<After>,
    /// Event kind -> the events of that kind after this bound.
    kinds: BTreeMap<&'a str, Option<i64>>,
}

#[derive(Default)]
struct Sql {
    predicate: String,
    binds: Vec<Bind>,
    branches: usize,
}

impl Sql {
    fn bind(&mut self, value: Bind) -> usize {
        self.binds.push(value);
        self.binds.len()
    }

    fn branch(&mut self) {
        if self.branches > 0 {
            self.predicate.push_str(" OR ");
        }
        self.branches += 1;
        self.predicate.push('(');
    }

    fn close(&mut self) {
        self.predicate.push(')');
    }

    /// `event_kind = $n` for one kind (an index scan in position order),
    /// `event_kind = ANY($n)` for several.
    fn kinds(&mut self, kinds: &[&str]) {
        if let [kind] = kinds {
            let n = self.bind(Bind::Text((*kind).to_owned()));
            let _ = write!(self.predicate, "event_kind = ${n}");
        } else {
            let n = self.bind(Bind::Texts(kinds.iter().map(|&kind| kind.to_owned()).collect()));
            let _ = write!(self.predicate, "event_kind = ANY(${n})");
        }
    }

    /// `aggregate_kind = $a AND aggregate_id = $b`; returns `a` and `b`.
    fn stream(&mut self, aggregate_kind: &str, aggregate_id: &str) -> (usize, usize) {
        let kind_bind = self.bind(Bind::Text(aggregate_kind.to_owned()));
        let id_bind = self.bind(Bind::Text(aggregate_id.to_owned()));
        let _ = write!(
            self.predicate,
            "aggregate_kind = ${kind_bind} AND aggregate_id = ${id_bind}"
        );
        (kind_bind, id_bind)
    }

    /// The bound of a stream's branch (`kind_bind` and `id_bind` bind its
    /// aggregate kind and id).
    fn stream_after(&mut self, after: Option<i64>, following: bool, kind_bind: usize, id_bind: usize) {
        match after {
            Some(after) if !following => {
                let n = self.bind(Bind::Position(after));
                // A stream's tail after one of its own events (after a
                // snapshot, a re-read after a commit). PostgreSQL judges
                // `position > p` by the whole log's positions, and its plans
                // walked the primary key from `p` to the end of the log, or
                // the whole stream, for a 10-event tail. So the bound goes
                // through the stream's sequence (the unique index serves it
                // exactly), and `position + 0` keeps the primary key out of
                // it. When `p` is not an event of the stream the sequence
                // bound is 0 and the stream is read whole, filtered by
                // position.
                let _ = write!(
                    self.predicate,
                    " AND (position + 0) > ${n} AND stream_sequence > coalesce((SELECT tail.stream_sequence \
                     FROM {EVENTS} tail WHERE tail.position = ${n} AND tail.aggregate_kind = ${kind_bind} \
                     AND tail.aggregate_id = ${id_bind}), 0)"
                );
            }
            after => self.after(after),
        }
    }

    fn after(&mut self, after: Option<i64>) {
        if let Some(after) = after {
            let n = self.bind(Bind::Position(after));
            let _ = write!(self.predicate, " AND position > ${n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Filter = EventFilter<String, i64>;

    fn planned(filters: &[Filter]) -> Plan {
        plan(filters, true).unwrap().unwrap()
    }

    #[test]
    fn no_filters_select_nothing() {
        assert_eq!(plan::<String>(&[], false).unwrap(), None);
    }

    #[test]
    fn one_stream_with_several_kinds_is_one_branch_without_the_frontier() {
        let plan = planned(&[
            Filter::for_aggregate("opened", "account", "A-1".into()),
            Filter::for_aggregate("deposited", "account", "A-1".into()),
        ]);
        assert_eq!(
            plan.predicate,
            "(aggregate_kind = $1 AND aggregate_id = $2 AND event_kind = ANY($3))"
        );
        assert_eq!(
            plan.binds,
            [
                Bind::Text("account".into()),
                Bind::Text("A-1".into()),
                Bind::Texts(vec!["deposited".into(), "opened".into()]),
            ]
        );
        assert!(!plan.frontier, "a plain stream load reads every committed event");
    }

    #[test]
    fn one_stream_after_a_position_is_not_cut_but_several_are() {
        let plan = planned(&[Filter::for_aggregate("opened", "account", "A-1".into()).after(7)]);
        assert_eq!(
            plan.predicate,
            "(aggregate_kind = $1 AND aggregate_id = $2 AND event_kind = $3 AND position > $4)"
        );
        assert!(!plan.frontier, "one stream's visible events are a prefix of it");
        let plan = planned(&[
            Filter::for_aggregate("opened", "account", "A-1".into()).after(7),
            Filter::for_aggregate("opened", "account", "A-2".into()),
        ]);
        assert!(plan.frontier, "a follower of several streams");
        let plan = planned(&[
            Filter::for_aggregate("opened", "account", "A-1".into()),
            Filter::for_aggregate("opened", "account", "A-2".into()),
        ]);
        assert!(!plan.frontier, "plain stream reads see every committed event");
    }

    #[test]
    fn a_tail_read_by_a_repository_goes_through_the_stream_sequence() {
        let filters = [Filter::for_aggregate("opened", "account", "A-1".into()).after(7)];
        let plan = plan(&filters, false).unwrap().unwrap();
        assert_eq!(
            plan.predicate,
            format!(
                "(aggregate_kind = $1 AND aggregate_id = $2 AND event_kind = $3 AND (position + 0) > $4 \
                 AND stream_sequence > coalesce((SELECT tail.stream_sequence FROM {EVENTS} tail \
                 WHERE tail.position = $4 AND tail.aggregate_kind = $1 AND tail.aggregate_id = $2), 0))"
            )
        );
        assert!(!plan.frontier);
    }

    #[test]
    fn kind_filters_merge_and_keep_the_smallest_after() {
        let plan = planned(&[
            Filter::for_event("a").after(10),
            Filter::for_event("a").after(3),
            Filter::for_event("b"),
            Filter::for_event("c"),
        ]);
        assert_eq!(
            plan.predicate,
            "(event_kind = ANY($1)) OR (event_kind = $2 AND position > $3)"
        );
        assert_eq!(
            plan.binds,
            [
                Bind::Texts(vec!["b".into(), "c".into()]),
                Bind::Text("a".into()),
                Bind::Position(3),
            ]
        );
        assert!(plan.frontier);
    }

    #[test]
    fn stream_filters_covered_by_a_kind_filter_are_dropped() {
        let plan = planned(&[
            Filter::for_event("noted"),
            Filter::for_aggregate("noted", "account", "a".into()),
            Filter::for_aggregate("opened", "account", "b".into()),
        ]);
        assert_eq!(
            plan.predicate,
            "(event_kind = $1) OR (aggregate_kind = $2 AND aggregate_id = $3 AND event_kind = $4)"
        );
        // A kind filter starting later does not cover a stream filter from the start.
        let plan = planned(&[
            Filter::for_event("noted").after(5),
            Filter::for_aggregate("noted", "account", "a".into()),
        ]);
        assert_eq!(plan.binds.len(), 5);
    }

    #[test]
    fn a_whole_stream_is_one_branch_without_an_event_kind() {
        let plan = planned(&[Filter::for_stream("account", "A-1".into())]);
        assert_eq!(
            plan.predicate, "(aggregate_kind = $1 AND aggregate_id = $2)",
            "no event kind predicate: the stream index serves it alone, in position order"
        );
        assert_eq!(
            plan.binds,
            [Bind::Text("account".into()), Bind::Text("A-1".into())]
        );
        assert!(!plan.frontier, "a plain stream load reads every committed event");
    }

    #[test]
    fn a_whole_stream_tail_goes_through_the_stream_sequence_unless_following() {
        let filters = [Filter::for_stream("account", "A-1".into()).after(7)];
        let tail = plan(&filters, false).unwrap().unwrap();
        assert_eq!(
            tail.predicate,
            format!(
                "(aggregate_kind = $1 AND aggregate_id = $2 AND (position + 0) > $3 \
                 AND stream_sequence > coalesce((SELECT tail.stream_sequence FROM {EVENTS} tail \
                 WHERE tail.position = $3 AND tail.aggregate_kind = $1 AND tail.aggregate_id = $2), 0))"
            )
        );
        assert_eq!(
            tail.binds,
            [
                Bind::Text("account".into()),
                Bind::Text("A-1".into()),
                Bind::Position(7)
            ]
        );
        assert!(!tail.frontier, "one stream's visible events are a prefix of it");
        let followed = planned(&filters);
        assert_eq!(
            followed.predicate,
            "(aggregate_kind = $1 AND aggregate_id = $2 AND position > $3)"
        );
    }

    #[test]
    fn whole_stream_filters_on_one_stream_merge_and_keep_the_smallest_after() {
        let plan = planned(&[
            Filter::for_stream("account", "A-1".into()).after(9),
            Filter::for_stream("account", "A-1".into()).after(4),
        ]);
        assert_eq!(
            plan.predicate,
            "(aggregate_kind = $1 AND aggregate_id = $2 AND position > $3)"
        );
        assert_eq!(plan.binds[2], Bind::Position(4));
        let plan = planned(&[
            Filter::for_stream("account", "A-1".into()).after(3),
            Filter::for_stream("account", "A-1".into()),
        ]);
        assert_eq!(
            plan.predicate, "(aggregate_kind = $1 AND aggregate_id = $2)",
            "no `after` is the smallest"
        );
    }

    #[test]
    fn a_whole_stream_covers_the_kind_filters_on_it_that_start_no_earlier() {
        let plan = planned(&[
            Filter::for_stream("account", "A-1".into()).after(5),
            // Covered: from the same position, and from later.
            Filter::for_aggregate("opened", "account", "A-1".into()).after(5),
            Filter::for_aggregate("noted", "account", "A-1".into()).after(9),
            // Not covered: from the start, before the whole-stream filter's 5.
            Filter::for_aggregate("closed", "account", "A-1".into()),
            // Another stream, and the same id under another aggregate kind.
            Filter::for_aggregate("opened", "account", "A-2".into()),
            Filter::for_aggregate("opened", "ledger", "A-1".into()),
        ]);
        assert_eq!(
            plan.predicate,
            "(aggregate_kind = $1 AND aggregate_id = $2 AND position > $3) \
             OR (aggregate_kind = $4 AND aggregate_id = $5 AND event_kind = $6) \
             OR (aggregate_kind = $7 AND aggregate_id = $8 AND event_kind = $9) \
             OR (aggregate_kind = $10 AND aggregate_id = $11 AND event_kind = $12)"
        );
        assert_eq!(
            plan.binds,
            [
                Bind::Text("account".into()),
                Bind::Text("A-1".into()),
                Bind::Position(5),
                Bind::Text("account".into()),
                Bind::Text("A-1".into()),
                Bind::Text("closed".into()),
                Bind::Text("account".into()),
                Bind::Text("A-2".into()),
                Bind::Text("opened".into()),
                Bind::Text("ledger".into()),
                Bind::Text("A-1".into()),
                Bind::Text("opened".into()),
            ]
        );
        assert!(
            plan.frontier,
            "filters with an `after` on several streams are a follower's"
        );
        // A whole stream from the start covers every kind filter on it.
        let plan = planned(&[
            Filter::for_aggregate("opened", "account", "A-1".into()),
            Filter::for_stream("account", "A-1".into()),
            Filter::for_aggregate("noted", "account", "A-1".into()).after(2),
        ]);
        assert_eq!(plan.predicate, "(aggregate_kind = $1 AND aggregate_id = $2)");
    }

    #[test]
    fn kind_filters_do_not_cover_a_whole_stream() {
        let plan = planned(&[
            Filter::for_event("opened"),
            Filter::for_stream("account", "A-1".into()),
        ]);
        assert_eq!(
            plan.predicate,
            "(event_kind = $1) OR (aggregate_kind = $2 AND aggregate_id = $3)"
        );
    }

    #[test]
    fn a_negative_after_is_refused() {
        assert!(matches!(
            plan(&[Filter::for_event("a").after(-1)], false),
            Err(Error::InvalidAfter { position: -1 })
        ));
        assert!(plan(&[Filter::for_event("a").after(0)], false).is_ok());
    }
}
