//! Names the derives make up: default kinds and event enum variants.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Ident, LitStr, Path};

use crate::attr::display_path;

/// The default kind of a type: its name in kebab-case.
pub(crate) fn default_kind(name: &Ident) -> LitStr {
    LitStr::new(&kebab_case(&name.unraw().to_string()), name.span())
}

/// `BankAccount` → `bank-account`, `HTTPServer` → `http-server`.
fn kebab_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (index, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
            continue;
        }
        if c.is_uppercase() && index > 0 {
            let previous = chars[index - 1];
            let next_is_lower = chars.get(index + 1).is_some_and(|next| next.is_lowercase());
            let word_starts = previous.is_lowercase()
                || previous.is_numeric()
                || (previous.is_uppercase() && next_is_lower);
            if word_starts && !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        out.extend(c.to_lowercase());
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `my_events` → `MyEvents`, `Created` → `Created`.
fn upper_camel_case(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for word in segment.split('_').filter(|word| !word.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// One variant name per event path.
///
/// Each variant is named after the last segment of its path (`a::Created`
/// → `Created`). Events whose names would clash take as many of the
/// segments before it as they need to differ, in `UpperCamelCase`
/// (`a::Created`, `b::Created` → `ACreated`, `BCreated`).
///
/// # Errors
///
/// When two paths end alike and cannot be told apart by their segments
/// (`Wrapper<u8>` and `Wrapper<u16>`).
pub(crate) fn variant_names(paths: &[Path]) -> syn::Result<Vec<Ident>> {
    let segments: Vec<Vec<String>> = paths
        .iter()
        .map(|path| {
            path.segments
                .iter()
                .map(|segment| upper_camel_case(&segment.ident.unraw().to_string()))
                .collect()
        })
        .collect();
    let name = |index: usize, depth: usize| -> String {
        let all = &segments[index];
        all[all.len().saturating_sub(depth)..].concat()
    };

    let mut depths = vec![1_usize; paths.len()];
    loop {
        let names: Vec<String> = (0..paths.len()).map(|index| name(index, depths[index])).collect();
        let mut grew = false;
        let mut clash = None;
        for index in 0..paths.len() {
            let clashes = names
                .iter()
                .enumerate()
                .any(|(other, other_name)| other != index && *other_name == names[index]);
            if clashes {
                clash.get_or_insert(index);
                if depths[index] < segments[index].len() {
                    depths[index] += 1;
                    grew = true;
                }
            }
        }
        match clash {
            None => {
                return Ok(names
                    .iter()
                    .map(|name| Ident::new(name, Span::call_site()))
                    .collect());
            }
            Some(index) if !grew => {
                return Err(syn::Error::new_spanned(
                    &paths[index],
                    format!(
                        "cannot name a variant for `{}` apart from another event with the same name; \
                         give one of them a `type` alias",
                        display_path(&paths[index])
                    ),
                ));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn the_default_kind_ignores_the_raw_prefix() {
        let name: Ident = parse_quote!(r#Match);
        assert_eq!(default_kind(&name).value(), "match");
    }

    #[test]
    fn kebab_case_splits_words() {
        assert_eq!(kebab_case("BankAccount"), "bank-account");
        assert_eq!(kebab_case("Account"), "account");
        assert_eq!(kebab_case("HTTPServer"), "http-server");
        assert_eq!(kebab_case("Account2Fa"), "account2-fa");
        assert_eq!(kebab_case("snake_case_name"), "snake-case-name");
        assert_eq!(kebab_case("TotalsV2"), "totals-v2");
    }

    fn names(paths: &[Path]) -> Vec<String> {
        variant_names(paths)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn variants_take_the_last_segment() {
        let paths: Vec<Path> = vec![parse_quote!(Opened), parse_quote!(events::Deposited)];
        assert_eq!(names(&paths), ["Opened", "Deposited"]);
    }

    #[test]
    fn clashing_names_take_more_segments() {
        let paths: Vec<Path> = vec![
            parse_quote!(a::Created),
            parse_quote!(b::Created),
            parse_quote!(Closed),
            parse_quote!(x::my_mod::Renamed),
            parse_quote!(y::my_mod::Renamed),
        ];
        assert_eq!(
            names(&paths),
            ["ACreated", "BCreated", "Closed", "XMyModRenamed", "YMyModRenamed"]
        );
    }

    #[test]
    fn a_short_path_keeps_its_name_when_a_longer_one_clashes() {
        let paths: Vec<Path> = vec![parse_quote!(Created), parse_quote!(other::Created)];
        assert_eq!(names(&paths), ["Created", "OtherCreated"]);
    }

    #[test]
    fn paths_that_differ_only_in_generics_are_an_error() {
        let paths: Vec<Path> = vec![parse_quote!(Wrapper<u8>), parse_quote!(Wrapper<u16>)];
        assert!(variant_names(&paths).is_err());
    }
}
