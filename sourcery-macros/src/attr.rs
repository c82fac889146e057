//! Parsing the derives' attributes: `key = Type`, `key = "string"`,
//! `events(A, b::B)` and `#[sourcery(crate = "path")]`, with errors that
//! point at the offending token and that keep going after a bad entry.

use std::collections::BTreeSet;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Data, DeriveInput, Ident, LitStr, Meta, Path, Token, Type};

/// Errors gathered while reading the input, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every error pushed so far, if any.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Rejects enums and unions, pointing at their keyword.
pub(crate) fn require_struct(input: &DeriveInput, derive: &str) -> syn::Result<()> {
    let keyword = match &input.data {
        Data::Struct(_) => return Ok(()),
        Data::Enum(data) => data.enum_token.span,
        Data::Union(data) => data.union_token.span,
    };
    Err(syn::Error::new(
        keyword,
        format!("`#[derive({derive})]` only works on structs"),
    ))
}

/// Rejects unions, pointing at their keyword.
pub(crate) fn require_struct_or_enum(input: &DeriveInput, derive: &str) -> syn::Result<()> {
    match &input.data {
        Data::Union(data) => Err(syn::Error::new(
            data.union_token.span,
            format!("`#[derive({derive})]` only works on structs and enums"),
        )),
        Data::Struct(_) | Data::Enum(_) => Ok(()),
    }
}

/// Reads every `#[name(key .., key ..)]` attribute: `entry` is called with
/// each key and the stream positioned after it, and must consume the
/// entry's value. An entry that fails is recorded and skipped, so one bad
/// entry does not hide the next. Returns the attributes found.
pub(crate) fn parse_attributes<'a>(
    attrs: &'a [Attribute],
    name: &str,
    errors: &mut Errors,
    mut entry: impl FnMut(&Ident, ParseStream<'_>) -> syn::Result<()>,
) -> Vec<&'a Attribute> {
    let mut found = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(name)) {
        found.push(attr);
        let Meta::List(list) = &attr.meta else {
            errors.push(syn::Error::new_spanned(
                &attr.meta,
                format!("expected `#[{name}(..)]` with a list of settings"),
            ));
            continue;
        };
        let mut entry_errors = Errors::default();
        let parser = |input: ParseStream<'_>| -> syn::Result<()> {
            while !input.is_empty() {
                let key = input.call(Ident::parse_any)?;
                if let Err(error) = entry(&key, input) {
                    entry_errors.push(error);
                    skip_entry(input);
                }
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(())
        };
        let result = parser.parse2(list.tokens.clone());
        if let Err(error) = entry_errors.finish() {
            errors.push(error);
        }
        if let Err(error) = result {
            errors.push(error);
        }
    }
    found
}

/// Skips the tokens up to the next top-level comma.
fn skip_entry(input: ParseStream<'_>) {
    let skipped = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    });
    debug_assert!(skipped.is_ok(), "skipping tokens cannot fail");
}

/// Stores `value` under `key`, or reports that `key` was given twice.
pub(crate) fn set_once<T>(slot: &mut Option<T>, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(key.span(), format!("duplicate `{key}`")));
    }
    *slot = Some(value);
    Ok(())
}

/// The error for a key the attribute does not know: the keys it does know,
/// and the nearest of them when the key looks like a typo of it.
pub(crate) fn unknown_key(key: &Ident, attribute: &str, expected: &[&str]) -> syn::Error {
    let written = key.unraw().to_string();
    let list = match expected.split_last() {
        Some((last, [])) => format!("`{last}`"),
        Some((last, rest)) => format!(
            "{} or `{last}`",
            rest.iter()
                .map(|key| format!("`{key}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::from("nothing"),
    };
    let mut message = format!("unknown key `{written}` in `#[{attribute}(..)]`: expected {list}");
    // With one key the list already says it.
    if let (true, Some(nearest)) = (expected.len() > 1, nearest(&written, expected)) {
        message.push_str("; did you mean `");
        message.push_str(nearest);
        message.push_str("`?");
    }
    syn::Error::new(key.span(), message)
}

/// The expected key closest to `written`, if it is close enough to be a
/// typo of it (a third of its letters changed, at least two).
fn nearest<'a>(written: &str, expected: &[&'a str]) -> Option<&'a str> {
    let limit = (written.chars().count() / 3).max(2);
    expected
        .iter()
        .map(|key| (distance(written, key), *key))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// The Levenshtein distance between two strings, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, b) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a != *b);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// `= Type`. A string literal gets a pointed error: the value is a type.
pub(crate) fn type_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<Type> {
    input.parse::<Token![=]>()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "expected a type, found a string literal: write `{key} = {}` without the quotes",
                lit.value()
            ),
        ));
    }
    input.parse()
}

/// `= path`: a function path (an upcaster).
pub(crate) fn path_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<Path> {
    input.parse::<Token![=]>()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "expected a function path, found a string literal: write `{key} = {}` without the quotes",
                lit.value()
            ),
        ));
    }
    input.parse()
}

/// `= N`: an integer literal that fits a `u32`.
pub(crate) fn u32_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<syn::LitInt> {
    input.parse::<Token![=]>()?;
    let lit: syn::LitInt = input
        .parse()
        .map_err(|error| syn::Error::new(error.span(), format!("expected an integer: `{key} = 2`")))?;
    lit.base10_parse::<u32>()?;
    Ok(lit)
}

/// `= "string"`. Anything else is pointed at.
pub(crate) fn string_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<LitStr> {
    input.parse::<Token![=]>()?;
    if input.peek(LitStr) {
        return input.parse();
    }
    let found: TokenTree = input.parse()?;
    Err(syn::Error::new(
        found.span(),
        format!("expected a string literal: `{key} = \"...\"`"),
    ))
}

/// A stream kind: a non-empty string literal.
pub(crate) fn kind_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<LitStr> {
    let kind = string_value(key, input)?;
    if kind.value().is_empty() {
        return Err(syn::Error::new(kind.span(), "the kind must not be empty"));
    }
    Ok(kind)
}

/// `(item, item, ..)` after `key`: the items `item` parses, in order. A
/// value that is not a parenthesised list is refused with `expected`, an
/// empty list with "needs at least one `what`".
fn list_value<T>(
    key: &Ident,
    input: ParseStream<'_>,
    expected: &str,
    what: &str,
    item: impl Fn(ParseStream<'_>) -> syn::Result<T>,
) -> syn::Result<Vec<T>> {
    let group = match input.parse::<TokenTree>()? {
        TokenTree::Group(group) if group.delimiter() == Delimiter::Parenthesis => group,
        other => return Err(syn::Error::new(other.span(), expected)),
    };
    let items = (|input: ParseStream<'_>| {
        let mut items = Vec::new();
        while !input.is_empty() {
            items.push(item(input)?);
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(items)
    })
    .parse2(group.stream())?;
    if items.is_empty() {
        return Err(syn::Error::new_spanned(
            quote!(#key #group),
            format!("`{key}(..)` needs at least one {what}"),
        ));
    }
    Ok(items)
}

/// `("a", "b", ..)`: a non-empty list of distinct, non-empty string
/// literals (aliases, retired kinds).
pub(crate) fn strings_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    let expected = format!("expected a list of string literals: `{key}(\"a\", \"b\")`");
    let list = list_value(key, input, &expected, "kind", |input| {
        input
            .parse::<LitStr>()
            .map_err(|error| syn::Error::new(error.span(), &expected))
    })?;
    let mut errors = Errors::default();
    let mut seen = BTreeSet::new();
    let mut kinds = Vec::with_capacity(list.len());
    for kind in list {
        if kind.value().is_empty() {
            errors.push(syn::Error::new(kind.span(), "a kind must not be empty"));
        } else if !seen.insert(kind.value()) {
            errors.push(syn::Error::new(
                kind.span(),
                format!("`{}` is listed twice", kind.value()),
            ));
        } else {
            kinds.push(kind);
        }
    }
    errors.finish()?;
    Ok(kinds)
}

/// `= Name` or `= "Name"`: an identifier for a generated item.
pub(crate) fn ident_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<Ident> {
    input.parse::<Token![=]>()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return lit.parse::<Ident>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!("`{key}` must name a Rust identifier, e.g. `{key} = \"AccountEvent\"`"),
            )
        });
    }
    input.parse()
}

/// The list in `events(A, b::B, ..)`: its paths, in order. Empty lists and
/// repeated paths are errors.
pub(crate) struct EventList {
    pub(crate) paths: Vec<Path>,
}

/// `(A, b::B, ..)` after the `events` key.
pub(crate) fn events_value(key: &Ident, input: ParseStream<'_>) -> syn::Result<EventList> {
    let event = |input: ParseStream<'_>| -> syn::Result<Path> {
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            return Err(syn::Error::new(
                lit.span(),
                format!(
                    "expected an event type, found a string literal: write `{}` without the quotes",
                    lit.value()
                ),
            ));
        }
        input.parse()
    };
    let expected = format!("expected a list of event types: `{key}(A, B, ..)`");
    let list = list_value(key, input, &expected, "event type", event)?;

    let mut errors = Errors::default();
    let mut seen = BTreeSet::new();
    let mut paths = Vec::with_capacity(list.len());
    for path in list {
        let written = path.to_token_stream().to_string();
        if seen.insert(written) {
            paths.push(path);
        } else {
            errors.push(syn::Error::new_spanned(
                &path,
                format!("`{}` is listed twice", display_path(&path)),
            ));
        }
    }
    errors.finish()?;
    Ok(EventList { paths })
}

/// The facade path: `::sourcery`, or the one given with
/// `#[sourcery(crate = "path")]`.
pub(crate) fn crate_path(attrs: &[Attribute], errors: &mut Errors) -> TokenStream {
    let mut path: Option<Path> = None;
    parse_attributes(attrs, "sourcery", errors, |key, input| {
        if key != "crate" {
            return Err(unknown_key(key, "sourcery", &["crate = \"path\""]));
        }
        let lit = string_value(key, input)?;
        let parsed = lit.parse::<Path>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                "expected the path of the sourcery crate, e.g. `crate = \"::sourcery\"`",
            )
        })?;
        set_once(&mut path, key, parsed)
    });
    path.map_or_else(|| quote!(::sourcery), |path| path.to_token_stream())
}

/// A path as written, without the spaces token printing adds.
pub(crate) fn display_path(path: &Path) -> String {
    let mut out = String::new();
    if path.leading_colon.is_some() {
        out.push_str("::");
    }
    for (index, segment) in path.segments.iter().enumerate() {
        if index > 0 {
            out.push_str("::");
        }
        out.push_str(&segment.ident.unraw().to_string());
        if !segment.arguments.is_none() {
            out.push_str(&segment.arguments.to_token_stream().to_string().replace(' ', ""));
        }
    }
    out
}

/// The span to blame when a required key is missing: the attribute if
/// there is one, else the type's name.
pub(crate) fn missing_span(found: &[&Attribute], ident: &Ident) -> TokenStream {
    found
        .first()
        .map_or_else(|| ident.to_token_stream(), |attr| attr.meta.to_token_stream())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_of_a_key_is_suggested_and_a_stranger_is_not() {
        let keys = [
            "id",
            "error",
            "events",
            "kind",
            "event_enum",
            "snapshot_version",
            "retired",
        ];
        assert_eq!(distance("evnets", "events"), 2);
        assert_eq!(nearest("evnets", &keys), Some("events"));
        assert_eq!(nearest("retire", &keys), Some("retired"));
        assert_eq!(nearest("snapshot_versoin", &keys), Some("snapshot_version"));
        assert_eq!(nearest("stream", &keys), None);
    }
}
