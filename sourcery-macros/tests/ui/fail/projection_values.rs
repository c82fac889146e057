use sourcery::Projection;

#[derive(Default, Projection)]
#[projection(metadata = "()", kind = "a", kind = "b", order = 1)]
struct WrongValues;

#[derive(Default, Projection)]
#[projection(events())]
#[sourcery(crate = 5)]
struct NoEventsAndBadCrate;

#[derive(Default, Projection)]
#[projection(events("Opened"))]
#[sourcery(krate = "::sourcery")]
struct QuotedEventAndUnknownKey;

fn main() {}
