use sourcery::Aggregate;

struct Opened;
struct Closed;

// A string where a type goes, and a kind that is no string: both reported.
#[derive(Default, Aggregate)]
#[aggregate(id = "String", error = std::fmt::Error, kind = 5, events(Opened))]
struct WrongValues;

#[derive(Default, Aggregate)]
#[aggregate(id = String, id = u64, error = std::fmt::Error, events(Opened))]
struct DuplicateKey;

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events())]
struct NoEvents;

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened, Closed, Opened))]
struct SameEventTwice;

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened), stream = "x")]
struct UnknownKey;

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened), snapshot_version = "2")]
struct QuotedSnapshotVersion;

fn main() {}

// A typo of a key: the nearest valid one is suggested.
#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, evnets(Opened))]
struct Typo;
