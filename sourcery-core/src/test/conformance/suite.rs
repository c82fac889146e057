//! The rule catalogue, the [`Suite`] that runs it and the [`suite!`]
//! macro that turns it into one test per rule.
//!
//! [`suite!`]: crate::test::conformance::suite

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::LocalBoxFuture;

use super::support::{CALL_TIMEOUT, DEFAULT_TIMEOUT};
use super::{ConformanceStore, LeaseFixture};
use super::{
    append, batch, checkpoint, expected, filter, ids, lease, names, optimistic, order, read, runner,
};
use super::{schema, size};
use super::{snapshot, stream, subscribe, text, unchecked, version};
use crate::checkpoint::CheckpointStore;
use crate::snapshot::SnapshotStore;
use crate::store::GloballyOrdered;
use crate::subscription::Subscribe;

/// Every rule, by capability and family: the one list [`Suite`] and the
/// [`suite!`](crate::test::conformance::suite) macro are built from.
#[doc(hidden)]
#[macro_export]
macro_rules! __sourcery_conformance_catalogue {
    ($callback:path { $($args:tt)* }) => {
        $callback! {
            $($args)*
            store {
                version [
                    is_last_position_of_stream none_for_new_stream other_streams_do_not_move_it
                    aggregate_kind_separates_streams reported_by_the_commit
                ]
                append [
                    round_trip metadata_round_trip bytes_exact positions_strictly_ascend
                    reports_last_position expecting_new_creates expecting_new_on_existing_conflicts
                ]
                optimistic [
                    current_version_commits stale_version_conflicts ahead_of_stream_conflicts
                    version_of_another_stream_conflicts on_empty_stream_conflicts conflict_reports_versions
                    conflict_writes_nothing race_one_winner create_race_one_winner
                ]
                unchecked [appends_whatever_the_stream_holds creates_a_new_stream]
                expected [
                    stream_exists_appends_at_any_version stream_exists_on_empty_conflicts
                    stream_exists_refuses_invalid_first transaction_modes
                ]
                ids [
                    round_trip replay_returns_first_outcome replay_whatever_expected_version
                    replay_of_a_creation first_write_wins partial_reuse_refused other_stream_refused
                    other_order_refused duplicate_in_batch_refused race_writes_once event_positions_found
                ]
                order [stream_in_append_order global_in_position_order same_id_other_kind_is_another_stream]
                filter [
                    for_event_selects_its_kind for_aggregate_selects_its_stream
                    for_aggregate_matches_the_aggregate_kind unknown_kind_selects_nothing
                    no_filters_select_nothing after_is_strict after_last_is_empty
                    after_position_of_another_stream union_each_once union_ascending union_after_per_filter
                ]
                stream [
                    every_kind only_its_stream after after_position_of_another_stream union_each_once
                    union_after_per_filter
                ]
                schema [versions_round_trip mixed_batch version_zero_refused]
                batch [whole_or_nothing contiguous_in_order concurrent_batches_do_not_interleave]
                names [
                    quotes_and_sql like_wildcards unicode empty_string whitespace_and_case
                    concatenation_collisions long_names
                ]
                size [payload_of_16_mib batch_of_10000]
                text [
                    nul_in_aggregate_kind_refused nul_in_aggregate_id_refused nul_in_event_kind_refused
                    nul_in_metadata_refused nul_lookups_find_nothing nul_lookalikes_round_trip
                ]
            }
            ordered {
                read [prefixes_only following_never_skips]
            }
            subscribe {
                subscribe [
                    catch_up_then_live resumes_after_position filter_after_is_kept
                    progress_past_filtered_events concurrent_writers_and_subscribers
                    subscribers_share_one_order head_position_is_last_visible load_page_is_a_prefix
                ]
                runner [
                    applies_each_event_once_in_order resumes_after_checkpoint wait_for_filtered_position
                    fenced_off_writes_nothing
                ]
            }
            checkpoints {
                checkpoint [
                    missing_is_none round_trip replaces_the_previous names_apart awkward_names
                    claim_returns_checkpoint claim_refuses_lower_fence advance_refuses_lower_fence
                    advance_records_higher_fence advance_never_backwards advance_unfenced_checks_only_order
                    save_keeps_fence fences_names_apart
                ]
            }
            snapshots {
                snapshot [keeps_the_newest declines_older_or_equal keys_stay_apart round_trip]
            }
            leases {
                lease [
                    one_holder released_on_drop takeover_after_holder_dies lost_when_severed names_apart
                    fence_grows
                ]
            }
        }
    };
}

/// What a rule needs from the store under test, beyond the
/// [`EventStore`](crate::store::EventStore) contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Nothing more: every store.
    Store,
    /// [`GloballyOrdered`]: one order across streams that readers can follow.
    Ordered,
    /// [`Subscribe`]: followed live (subscriptions and the projection runner).
    Subscribe,
    /// A [`CheckpointStore`] to check.
    Checkpoints,
    /// A [`SnapshotStore`] to check.
    Snapshots,
    /// A [`Lease`](crate::runner::Lease) to check, through a [`LeaseFixture`].
    Leases,
}

impl Capability {
    /// How a store declares it: the `suite!` key or [`Suite`] method.
    #[must_use]
    pub fn declared_by(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Ordered => "capabilities: [ordered]",
            Self::Subscribe => "capabilities: [subscribe]",
            Self::Checkpoints => "checkpoints",
            Self::Snapshots => "snapshots",
            Self::Leases => "leases",
        }
    }
}

macro_rules! capability_of {
    (store) => {
        Capability::Store
    };
    (ordered) => {
        Capability::Ordered
    };
    (subscribe) => {
        Capability::Subscribe
    };
    (checkpoints) => {
        Capability::Checkpoints
    };
    (snapshots) => {
        Capability::Snapshots
    };
    (leases) => {
        Capability::Leases
    };
}

macro_rules! rule_table {
    ($($capability:ident { $($family:ident [$($rule:ident)*])* })*) => {
        /// Every rule's name and what it needs, in the order the suite runs them.
        pub(crate) const RULES: &[(&str, Capability)] = &[
            $($($((concat!(stringify!($family), ".", stringify!($rule)), capability_of!($capability)),)*)*)*
        ];
    };
}
__sourcery_conformance_catalogue!(rule_table {});

/// A rule ready to run: it makes what it needs and checks it.
type Run<'a> = Box<dyn FnMut() -> LocalBoxFuture<'a, ()> + 'a>;

/// A shared factory.
type Factory<'a, T> = Rc<RefCell<dyn FnMut() -> LocalBoxFuture<'a, T> + 'a>>;

fn factory<'a, T, F, Fut>(mut make: F) -> Factory<'a, T>
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = T> + 'a,
{
    Rc::new(RefCell::new(move || make().boxed_local()))
}

fn make<'a, T: 'a>(factory: &Factory<'a, T>) -> LocalBoxFuture<'a, T> {
    (factory.borrow_mut())()
}

/// The conformance suite over one store: every rule, each against a fresh
/// store, with what the store declares it supports.
///
/// ```
/// use sourcery_core::checkpoint;
/// use sourcery_core::store::inmemory;
/// use sourcery_core::test::conformance::Suite;
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let report = Suite::new(|| async { inmemory::Store::<String, serde_json::Value>::new() })
///     .ordered()
///     .subscribe()
///     .checkpoints(|| async { checkpoint::inmemory::CheckpointStore::new() })
///     .check()
///     .await;
/// assert!(report.failures().next().is_none(), "{report}");
/// // No snapshot store or lease was given: those rules are not applicable.
/// assert!(report.not_applicable().any(|name| name.starts_with("snapshot.")));
/// # });
/// ```
pub struct Suite<'a, S> {
    store: Factory<'a, S>,
    runs: Vec<Option<Run<'a>>>,
    timeout: Duration,
}

impl<S> fmt::Debug for Suite<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite")
            .field(
                "applicable",
                &self.runs.iter().filter(|run| run.is_some()).count(),
            )
            .field("rules", &self.runs.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Fills the runs of one capability's rules.
fn fill<'a, S>(
    suite: &mut Suite<'a, S>,
    capability: Capability,
    mut run: impl FnMut(&str) -> Option<Run<'a>>,
) {
    for ((name, needs), slot) in RULES.iter().zip(&mut suite.runs) {
        if *needs == capability {
            *slot = run(name);
        }
    }
}

/// A rule function of one input, boxed.
type One<S> = fn(S) -> LocalBoxFuture<'static, ()>;
/// A rule function of two inputs, boxed.
type Two<S, T> = fn(S, T) -> LocalBoxFuture<'static, ()>;

/// The rule function named `$name` among the families given.
macro_rules! one_of {
    ($name:expr, $($family:ident [$($rule:ident)*])*) => {
        match $name {
            $($(concat!(stringify!($family), ".", stringify!($rule)) =>
                Some((|input| $family::$rule(input).boxed_local()) as One<_>),)*)*
            _ => None,
        }
    };
}

/// As `one_of!`, for rules of two inputs.
macro_rules! two_of {
    ($name:expr, $($family:ident [$($rule:ident)*])*) => {
        match $name {
            $($(concat!(stringify!($family), ".", stringify!($rule)) =>
                Some((|store, other| $family::$rule(store, other).boxed_local()) as Two<_, _>),)*)*
            _ => None,
        }
    };
}

macro_rules! methods {
    (
        store { $($sf:ident [$($sr:ident)*])* }
        ordered { $($of:ident [$($or:ident)*])* }
        subscribe { $($uf:ident [$($ur:ident)*])* }
        checkpoints { $($cf:ident [$($cr:ident)*])* }
        snapshots { $($nf:ident [$($nr:ident)*])* }
        leases { $($lf:ident [$($lr:ident)*])* }
    ) => {
        impl<'a, S: ConformanceStore> Suite<'a, S> {
            /// The suite over the stores `make_store` makes: one fresh, empty
            /// store per rule (a fresh schema, database or file per call, so
            /// rules cannot see each other's events). Only the rules every
            /// store must pass apply until the store declares more.
            pub fn new<F, Fut>(make_store: F) -> Self
            where
                F: FnMut() -> Fut + 'a,
                Fut: Future<Output = S> + 'a,
            {
                let mut suite = Self {
                    store: factory(make_store),
                    runs: RULES.iter().map(|_| None).collect(),
                    timeout: DEFAULT_TIMEOUT,
                };
                suite.fill_on_store(Capability::Store, |name| one_of!(name, $($sf [$($sr)*])*));
                suite
            }

            /// Declares the store [`GloballyOrdered`]: adds the rules on
            /// readers during concurrent writes.
            #[must_use]
            pub fn ordered(mut self) -> Self
            where
                S: GloballyOrdered,
            {
                self.fill_on_store(Capability::Ordered, |name| one_of!(name, $($of [$($or)*])*));
                self
            }

            /// Declares that the store implements [`Subscribe`]: adds the
            /// subscription and projection runner rules.
            #[must_use]
            pub fn subscribe(mut self) -> Self
            where
                S: Subscribe,
            {
                self.fill_on_store(Capability::Subscribe, |name| one_of!(name, $($uf [$($ur)*])*));
                self
            }

            /// Adds the checkpoint store rules, each against a fresh
            /// checkpoint store from `make` (and a fresh event store, whose
            /// positions it saves).
            #[must_use]
            pub fn checkpoints<K, F, Fut>(mut self, make_checkpoints: F) -> Self
            where
                K: CheckpointStore<S::Position>,
                F: FnMut() -> Fut + 'a,
                Fut: Future<Output = K> + 'a,
            {
                self.fill_on_store_and(Capability::Checkpoints, &factory(make_checkpoints), |name| two_of!(name, $($cf [$($cr)*])*));
                self
            }

            /// Adds the snapshot store rules, each against a fresh snapshot
            /// store from `make` (and a fresh event store, whose positions
            /// the snapshots carry).
            #[must_use]
            pub fn snapshots<T, F, Fut>(mut self, make_snapshots: F) -> Self
            where
                T: SnapshotStore<S::Position> + 'static,
                F: FnMut() -> Fut + 'a,
                Fut: Future<Output = T> + 'a,
            {
                self.fill_on_store_and(Capability::Snapshots, &factory(make_snapshots), |name| two_of!(name, $($nf [$($nr)*])*));
                self
            }

            /// Adds the lease rules, each against a fresh [`LeaseFixture`]
            /// from `make`.
            #[must_use]
            pub fn leases<L, F, Fut>(mut self, make_leases: F) -> Self
            where
                L: LeaseFixture,
                F: FnMut() -> Fut + 'a,
                Fut: Future<Output = L> + 'a,
            {
                let leases = factory(make_leases);
                fill(&mut self, Capability::Leases, |name| {
                    let rule: One<L> = one_of!(name, $($lf [$($lr)*])*)?;
                    let leases = Rc::clone(&leases);
                    Some(Box::new(move || {
                        let made = make(&leases);
                        async move { rule(made.await).await }.boxed_local()
                    }))
                });
                self
            }
        }
    };
}
__sourcery_conformance_catalogue!(methods {});

impl<'a, S: ConformanceStore> Suite<'a, S> {
    /// Fills the runs of `capability`'s rules that take a fresh store alone:
    /// `pick` names the rule function of each rule.
    fn fill_on_store(&mut self, capability: Capability, pick: impl Fn(&str) -> Option<One<S>>) {
        let store = Rc::clone(&self.store);
        fill(self, capability, |name| {
            let rule = pick(name)?;
            let store = Rc::clone(&store);
            Some(Box::new(move || {
                let made = make(&store);
                async move { rule(made.await).await }.boxed_local()
            }) as Run<'a>)
        });
    }

    /// As [`fill_on_store`](Self::fill_on_store), for rules that take a
    /// fresh store and a fresh `T` from `other`.
    fn fill_on_store_and<T: 'a>(
        &mut self,
        capability: Capability,
        other: &Factory<'a, T>,
        pick: impl Fn(&str) -> Option<Two<S, T>>,
    ) {
        let store = Rc::clone(&self.store);
        fill(self, capability, |name| {
            let rule = pick(name)?;
            let store = Rc::clone(&store);
            let other = Rc::clone(other);
            Some(Box::new(move || {
                let made = make(&store);
                let beside = make(&other);
                async move { rule(made.await, beside.await).await }.boxed_local()
            }) as Run<'a>)
        });
    }
}

impl<S: ConformanceStore> Suite<'_, S> {
    /// How long one store call may take before a rule calls it hung (30 s
    /// unless set).
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Every rule's name and what it needs, in the order the suite runs
    /// them.
    pub fn rules() -> impl Iterator<Item = (&'static str, Capability)> {
        RULES.iter().copied()
    }

    /// Runs the rule `name` alone, panicking with its label when it fails.
    ///
    /// # Panics
    ///
    /// When the rule fails; when no rule has that name; when the rule is
    /// not applicable (the store did not declare what it needs).
    pub async fn run_rule(mut self, name: &str) {
        let Some(index) = RULES.iter().position(|(rule, _)| *rule == name) else {
            panic!("conformance: there is no rule named {name:?}");
        };
        let Some(run) = self.runs[index].as_mut() else {
            panic!(
                "conformance rule {name}: not applicable, the store does not declare `{}`",
                RULES[index].1.declared_by()
            );
        };
        CALL_TIMEOUT.scope(self.timeout, run()).await;
    }

    /// Runs every applicable rule, each against fresh stores, and reports
    /// each rule's outcome. A failing rule does not stop the others.
    pub async fn check(mut self) -> Report {
        let mut outcomes = Vec::with_capacity(RULES.len());
        for ((name, needs), run) in RULES.iter().zip(&mut self.runs) {
            let outcome = match run {
                None => Outcome::NotApplicable(*needs),
                Some(run) => {
                    let checked = AssertUnwindSafe(CALL_TIMEOUT.scope(self.timeout, run()))
                        .catch_unwind()
                        .await;
                    match checked {
                        Ok(()) => Outcome::Passed,
                        Err(panic) => Outcome::Failed(panic_message(panic.as_ref())),
                    }
                }
            };
            outcomes.push((*name, outcome));
        }
        Report { outcomes }
    }

    /// Runs every applicable rule and panics listing the failed ones.
    ///
    /// # Panics
    ///
    /// When a rule fails, with every failed rule's message.
    pub async fn run(self) {
        let report = self.check().await;
        assert!(report.failures().next().is_none(), "{report}");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else {
        "a panic without a message".to_owned()
    }
}

/// How one rule went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The store keeps the rule.
    Passed,
    /// The store breaks the rule: the rule's message,
    /// `conformance rule <name>: expected ..., got ...`.
    Failed(String),
    /// The store did not declare what the rule needs.
    NotApplicable(Capability),
}

/// Every rule's [`Outcome`], in the order the suite ran them.
#[derive(Debug, Clone)]
pub struct Report {
    outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// Every rule's name and outcome.
    pub fn outcomes(&self) -> impl Iterator<Item = (&'static str, &Outcome)> {
        self.outcomes.iter().map(|(name, outcome)| (*name, outcome))
    }

    /// The outcome of the rule `name`.
    #[must_use]
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|(rule, _)| *rule == name)
            .map(|(_, outcome)| outcome)
    }

    /// The failed rules and their messages, in the order they ran.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.outcomes.iter().filter_map(|(name, outcome)| match outcome {
            Outcome::Failed(message) => Some((*name, message.as_str())),
            _ => None,
        })
    }

    /// The rules that did not apply.
    pub fn not_applicable(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Outcome::NotApplicable(_)))
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passed = self
            .outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Passed)
            .count();
        let failed = self.failures().count();
        let skipped = self.not_applicable().count();
        writeln!(
            f,
            "conformance: {passed} rules passed, {failed} failed, {skipped} not applicable"
        )?;
        for (name, outcome) in &self.outcomes {
            match outcome {
                Outcome::Failed(message) => writeln!(f, "FAILED {name}: {message}")?,
                Outcome::NotApplicable(needs) => {
                    writeln!(
                        f,
                        "not applicable {name}: the store does not declare `{}`",
                        needs.declared_by()
                    )?;
                }
                Outcome::Passed => {}
            }
        }
        Ok(())
    }
}

/// Runs one rule for the [`suite!`](crate::test::conformance::suite)
/// macro's generated tests, on a fresh multi-threaded Tokio runtime.
#[doc(hidden)]
pub fn __run_rule<'a, S: ConformanceStore>(name: &str, skip: bool, suite: impl FnOnce() -> Suite<'a, S>) {
    if skip {
        use std::io::Write as _;
        // Straight to stderr: the harness hides the output of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "conformance rule {name}: SKIPPED (`skip_if` holds)"
        );
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("conformance: a Tokio runtime could not be built: {error}"),
    };
    runtime.block_on(suite().run_rule(name));
}

/// Generates one `#[test]` per conformance rule for a store: `cargo test`
/// lists every rule by name (`rules::version::is_last_position_of_stream`,
/// ...) and shows exactly which failed.
///
/// ```ignore
/// // tests/conformance.rs of your store crate
/// sourcery::test::conformance::suite! {
///     store: || async { MyStore::open_fresh().await },     // a fresh, empty store per rule
///     capabilities: [ordered, subscribe],                  // optional: GloballyOrdered, Subscribe
///     checkpoints: || async { MyCheckpoints::fresh() },    // optional: a CheckpointStore
///     snapshots: || async { MySnapshots::fresh() },        // optional: a SnapshotStore
///     leases: || async { MyLeaseFixture::new() },          // optional: a LeaseFixture
///     skip_if: std::env::var_os("MY_DATABASE_URL").is_none(), // optional: skip every rule
/// }
/// ```
///
/// Keys come in this order; only `store` is required. The rules of a
/// capability the call does not declare are generated as ignored tests
/// that say why (`not applicable: ...`), never as passing ones. See the
/// [module docs](crate::test::conformance) for the rules.
#[macro_export]
macro_rules! __sourcery_conformance_suite {
    (
        store: $store:expr
        $(, capabilities: [$($capability:ident),* $(,)?])?
        $(, checkpoints: $checkpoints:expr)?
        $(, snapshots: $snapshots:expr)?
        $(, leases: $leases:expr)?
        $(, skip_if: $skip:expr)?
        $(,)?
    ) => {
        /// The suite over this file's store, as `suite!` declared it.
        fn __sourcery_conformance_suite()
        -> $crate::test::conformance::Suite<'static, impl $crate::test::conformance::ConformanceStore> {
            $crate::test::conformance::Suite::new($store)
                $($(.$capability())*)?
                $(.checkpoints($checkpoints))?
                $(.snapshots($snapshots))?
                $(.leases($leases))?
        }

        /// Whether to skip every rule (`skip_if`).
        fn __sourcery_conformance_skip() -> bool {
            let skip: &[bool] = &[$($skip)?];
            skip.first().copied().unwrap_or(false)
        }

        $crate::__sourcery_conformance_catalogue! {
            $crate::__sourcery_conformance_tests {
                @suite (super::super::__sourcery_conformance_suite)
                @skip (super::super::__sourcery_conformance_skip())
                @capabilities [store $($($capability)*)?]
                @factories [$(checkpoints $checkpoints)? ; $(snapshots $snapshots)? ; $(leases $leases)?]
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sourcery_conformance_tests {
    (
        @suite $suite:tt
        @skip $skip:tt
        @capabilities [$($declared:ident)*]
        @factories [$($checkpoints:ident $_c:expr)? ; $($snapshots:ident $_s:expr)? ; $($leases:ident $_l:expr)?]
        $($catalogue:tt)*
    ) => {
        $crate::__sourcery_conformance_tests! {
            @emit $suite $skip [$($declared)* $($checkpoints)? $($snapshots)? $($leases)?]
            $($catalogue)*
        }
    };
    (@emit $suite:tt $skip:tt $declared:tt $($capability:ident { $($family:ident [$($rule:ident)*])* })*) => {
        #[allow(unused_imports, reason = "the suite's expressions may name items of the file")]
        mod rules {
            use super::*;
            $(
                $crate::__sourcery_conformance_group! {
                    $capability $declared $suite $skip
                    $($family [$($rule)*])*
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sourcery_conformance_group {
    // The capability was declared: real tests.
    ($capability:ident [$capability2:ident $($rest:ident)*] $suite:tt $skip:tt $($family:ident [$($rule:ident)*])*)
        => {
        $crate::__sourcery_conformance_group! {
            @match $capability $capability2 [$($rest)*] $suite $skip $($family [$($rule)*])*
        }
    };
    // Not declared: ignored tests that say so.
    ($capability:ident [] $suite:tt $skip:tt $($family:ident [$($rule:ident)*])*) => {
        $(
            mod $family {
                $(
                    #[test]
                    #[ignore = "not applicable: the `suite!` call does not declare the capability these rules need"]
                    fn $rule() {}
                )*
            }
        )*
    };
    (@match store store $rest:tt $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { @tests $suite $skip $($tail)* }
    };
    (@match ordered ordered $rest:tt $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { @tests $suite $skip $($tail)* }
    };
    (@match subscribe subscribe $rest:tt $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { @tests $suite $skip $($tail)* }
    };
    (@match checkpoints checkpoints $rest:tt $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { @tests $suite $skip $($tail)* }
    };
    (@match snapshots snapshots $rest:tt $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { @tests $suite $skip $($tail)* }
    };
    (@match leases leases $rest:tt $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { @tests $suite $skip $($tail)* }
    };
    (@match $capability:ident $other:ident [$($rest:ident)*] $suite:tt $skip:tt $($tail:tt)*) => {
        $crate::__sourcery_conformance_group! { $capability [$($rest)*] $suite $skip $($tail)* }
    };
    (@tests $suite:tt $skip:tt $($family:ident [$($rule:ident)*])*) => {
        $(
            mod $family {
                #[allow(unused_imports, reason = "the suite's expressions may name items of the file")]
                use super::*;
                $(
                    #[test]
                    fn $rule() {
                        $crate::test::conformance::__run_rule(
                            concat!(stringify!($family), ".", stringify!($rule)),
                            $skip,
                            $suite,
                        );
                    }
                )*
            }
        )*
    };
}
