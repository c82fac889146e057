//! Wrong `#[event(..)]` attributes: each error points at the bad entry.
use serde::{Deserialize, Serialize};
use sourcery::DomainEvent;

#[derive(Serialize, Deserialize, DomainEvent)]
struct NoKind;

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(kind = "a.b", aliases("a.b"))]
struct AliasIsTheKind;

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(kind = "a.c", aliases("a.old", "a.old"), version = 0)]
struct RepeatedAliasAndVersionZero;

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(kind = "a.d", version = 3)]
struct VersionWithoutUpcast;

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(kind = "a.e", alias = "a.f", upcast = "steps")]
struct UnknownKeyAndQuotedPath;

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(kind = "", aliases())]
struct EmptyKindAndAliases;

fn main() {}
