//! `#[derive(DomainEvent)]`.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, LitStr, Path};

use crate::attr::{self, Errors};

const EXPECTED: &[&str] = &["kind", "aliases", "version", "upcast"];

/// What `#[event(..)]` says.
struct Settings {
    kind: LitStr,
    aliases: Vec<LitStr>,
    version: Option<syn::LitInt>,
    upcast: Option<Path>,
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    attr::require_struct_or_enum(input, "DomainEvent")?;
    let mut errors = Errors::default();
    let krate = attr::crate_path(&input.attrs, &mut errors);
    let settings = settings(input, &mut errors);
    errors.finish()?;
    let Some(settings) = settings else {
        // `settings` only fails after pushing an error.
        return Ok(TokenStream::new());
    };
    Ok(expand(input, &krate, &settings))
}

fn settings(input: &DeriveInput, errors: &mut Errors) -> Option<Settings> {
    let mut kind = None;
    let mut aliases = None;
    let mut version: Option<syn::LitInt> = None;
    let mut upcast = None;
    let mut seen = BTreeSet::new();
    let found = attr::parse_attributes(&input.attrs, "event", errors, |key, stream| {
        seen.insert(key.to_string());
        match key.to_string().as_str() {
            "kind" => attr::set_once(&mut kind, key, attr::kind_value(key, stream)?),
            "aliases" => attr::set_once(&mut aliases, key, attr::strings_value(key, stream)?),
            "version" => attr::set_once(&mut version, key, attr::u32_value(key, stream)?),
            "upcast" => attr::set_once(&mut upcast, key, attr::path_value(key, stream)?),
            _ => Err(attr::unknown_key(key, "event", EXPECTED)),
        }
    });
    if !seen.contains("kind") {
        let blame = attr::missing_span(&found, &input.ident);
        errors.push(syn::Error::new_spanned(
            blame,
            "`#[derive(DomainEvent)]` needs `#[event(kind = \"...\")]`: the stable name the event is stored under",
        ));
    }
    let kind = kind?;
    let aliases = aliases.unwrap_or_default();
    for alias in &aliases {
        if alias.value() == kind.value() {
            errors.push(syn::Error::new(
                alias.span(),
                format!(
                    "`{}` is the event's kind; an alias names a kind it was stored under before",
                    kind.value()
                ),
            ));
        }
    }
    if let Some(version) = &version {
        match version.base10_parse::<u32>() {
            Ok(0) => errors.push(syn::Error::new(version.span(), "schema versions start at 1")),
            Ok(1) | Err(_) => {}
            Ok(_) if upcast.is_none() => errors.push(syn::Error::new(
                version.span(),
                format!(
                    "`version = {version}` needs `upcast = path`: a function \
                     `fn(&mut UpcastStep<'_>) -> Result<(), UpcastError>` with the step from each older version"
                ),
            )),
            Ok(_) => {}
        }
    }
    Some(Settings {
        kind,
        aliases,
        version,
        upcast,
    })
}

fn expand(input: &DeriveInput, krate: &TokenStream, settings: &Settings) -> TokenStream {
    let Settings {
        kind,
        aliases,
        version,
        upcast,
    } = settings;
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let event = quote!(#krate::event);
    let aliases_item =
        (!aliases.is_empty()).then(|| quote!(const ALIASES: &'static [&'static str] = &[#(#aliases),*];));
    let version_item = version
        .as_ref()
        .map(|version| quote!(const VERSION: u32 = #version;));
    let upcast_item = upcast.as_ref().map(|upcast| {
        quote! {
            fn upcast(
                step: &mut #event::UpcastStep<'_>,
            ) -> ::core::result::Result<(), #event::UpcastError> {
                #upcast(step)
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics #event::DomainEvent for #name #ty_generics #where_clause {
            const KIND: &'static str = #kind;
            #aliases_item
            #version_item
            #upcast_item
        }
    }
}
