use sourcery::{Aggregate, Projection};

#[derive(Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened))]
enum AnEnum {
    A,
}

#[derive(Projection)]
union AUnion {
    a: u8,
}

fn main() {}
