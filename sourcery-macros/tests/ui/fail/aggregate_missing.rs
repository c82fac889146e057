use sourcery::Aggregate;

#[derive(Default, Aggregate)]
#[aggregate(id = String)]
struct MissingErrorAndEvents;

#[derive(Default, Aggregate)]
struct NoAttribute;

fn main() {}
