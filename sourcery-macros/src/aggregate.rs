//! `#[derive(Aggregate)]`.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, LitStr, Path, Type};

use crate::attr::{self, Errors};
use crate::naming;

const EXPECTED: &[&str] = &[
    "id",
    "error",
    "events",
    "kind",
    "event_enum",
    "snapshot_version",
    "retired",
];

/// What `#[aggregate(..)]` says.
struct Settings {
    id: Type,
    error: Type,
    events: Vec<Path>,
    kind: LitStr,
    event_enum: Ident,
    snapshot_version: Option<syn::LitInt>,
    retired: Vec<LitStr>,
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    attr::require_struct(input, "Aggregate")?;
    let mut errors = Errors::default();
    let krate = attr::crate_path(&input.attrs, &mut errors);
    let settings = settings(input, &mut errors);
    errors.finish()?;
    let Some(settings) = settings else {
        // `settings` only fails after pushing an error.
        return Ok(TokenStream::new());
    };
    let variants = naming::variant_names(&settings.events)?;
    Ok(expand(input, &krate, &settings, &variants))
}

fn settings(input: &DeriveInput, errors: &mut Errors) -> Option<Settings> {
    let mut id = None;
    let mut error = None;
    let mut events = None;
    let mut kind = None;
    let mut event_enum = None;
    let mut snapshot_version = None;
    let mut retired = None;
    let mut seen = BTreeSet::new();
    let found = attr::parse_attributes(&input.attrs, "aggregate", errors, |key, stream| {
        let name = key.to_string();
        seen.insert(name.clone());
        match name.as_str() {
            "id" => attr::set_once(&mut id, key, attr::type_value(key, stream)?),
            "error" => attr::set_once(&mut error, key, attr::type_value(key, stream)?),
            "events" => attr::set_once(&mut events, key, attr::events_value(key, stream)?),
            "kind" => attr::set_once(&mut kind, key, attr::kind_value(key, stream)?),
            "event_enum" => attr::set_once(&mut event_enum, key, attr::ident_value(key, stream)?),
            "snapshot_version" => attr::set_once(&mut snapshot_version, key, attr::u32_value(key, stream)?),
            "retired" => attr::set_once(&mut retired, key, attr::strings_value(key, stream)?),
            _ => Err(attr::unknown_key(key, "aggregate", EXPECTED)),
        }
    });

    let missing: Vec<&str> = [
        ("id", "`id = ..`"),
        ("error", "`error = ..`"),
        ("events", "`events(..)`"),
    ]
    .into_iter()
    .filter(|(key, _)| !seen.contains(*key))
    .map(|(_, shown)| shown)
    .collect();
    if !missing.is_empty() {
        let blame = attr::missing_span(&found, &input.ident);
        let message = if found.is_empty() {
            "`#[derive(Aggregate)]` needs `#[aggregate(id = .., error = .., events(..))]`".to_owned()
        } else {
            let list = match missing.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            format!("`#[aggregate(..)]` is missing {list}")
        };
        errors.push(syn::Error::new_spanned(blame, message));
    }

    let name = &input.ident;
    Some(Settings {
        id: id?,
        error: error?,
        events: events?.paths,
        kind: kind.unwrap_or_else(|| naming::default_kind(name)),
        event_enum: event_enum.unwrap_or_else(|| format_ident!("{}Event", name)),
        snapshot_version,
        retired: retired.unwrap_or_default(),
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "one quote! per generated item, read top to bottom"
)]
fn expand(input: &DeriveInput, krate: &TokenStream, settings: &Settings, variants: &[Ident]) -> TokenStream {
    let Settings {
        id,
        error,
        events,
        kind,
        event_enum,
        snapshot_version,
        retired,
    } = settings;
    let name = &input.ident;
    let vis = &input.vis;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    let aggregate = quote!(#krate::aggregate::Aggregate);
    let apply = quote!(#krate::aggregate::Apply);
    let domain_event = quote!(#krate::event::DomainEvent);
    let payload = quote!(#krate::event::EventPayload);
    let decode = quote!(#krate::event::DecodeEvent);
    let codec = quote!(#krate::codec::Codec);

    // `<E as DomainEvent>::KIND`, spanned at the event so a type that is no
    // domain event is pointed at in the attribute.
    let kinds: Vec<TokenStream> = events
        .iter()
        .map(|event| quote_spanned!(event.span()=> <#event as #domain_event>::KIND))
        .collect();

    let enum_doc = format!(
        "The events of [`{name}`], one variant per event type.\n\n\
         Written by `#[derive(Aggregate)]`; convert an event into it with `.into()`."
    );
    let variant_docs = events
        .iter()
        .map(|event| format!("A `{}` event.", attr::display_path(event)));
    let enum_item = quote! {
        #[doc = #enum_doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
        #[allow(
            clippy::enum_variant_names,
            clippy::large_enum_variant,
            reason = "the variants are the events' own names and types, which the user chose"
        )]
        #vis enum #event_enum {
            #(
                #[doc = #variant_docs]
                #variants(#events),
            )*
        }
    };

    // Spanned at the event's name in `events(..)`: when a handler converts an
    // event the list lacks, rustc shows this impl ("but trait `From<Opened>`
    // is implemented"), and so the list the missing event belongs in.
    let from_impls = events.iter().zip(variants).map(|(event, variant)| {
        quote_spanned! {event.span()=>
            #[automatically_derived]
            impl ::core::convert::From<#event> for #event_enum {
                #[inline]
                fn from(event: #event) -> Self {
                    Self::#variant(event)
                }
            }
        }
    });

    let decode_arms = events.iter().zip(variants).map(|(event, variant)| {
        quote! {
            if let ::core::option::Option::Some(decoded) = <#event as #decode>::decode_with(codec, event)? {
                return ::core::result::Result::Ok(::core::option::Option::Some(Self::#variant(decoded)));
            }
        }
    });
    let aliases: Vec<TokenStream> = events
        .iter()
        .map(|event| quote_spanned!(event.span()=> <#event as #domain_event>::ALIASES))
        .collect();
    let versions = events
        .iter()
        .map(|event| quote_spanned!(event.span()=> <#event as #domain_event>::VERSION));

    let glue = quote! {
        #[automatically_derived]
        impl #payload for #event_enum {
            fn kind(&self) -> &'static str {
                match self {
                    #( Self::#variants(_) => #kinds, )*
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    #( Self::#variants(_) => #versions, )*
                }
            }

            fn encode_with<C: #codec>(
                &self,
                codec: &C,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, <C as #codec>::Error> {
                match self {
                    #( Self::#variants(event) => <#events as #payload>::encode_with(event, codec), )*
                }
            }
        }

        #[automatically_derived]
        impl #decode for #event_enum {
            fn event_kinds() -> &'static [&'static str] {
                const { &[#(#kinds),*] }
            }

            fn alias_kinds() -> &'static [&'static str] {
                const COUNT: usize = 0 #( + #aliases.len() )*;
                const ALIASES: [&str; COUNT] = #krate::event::__private::concat::<COUNT>(&[#(#aliases),*]);
                &ALIASES
            }

            fn decode_with<C: #codec>(
                codec: &C,
                event: #krate::event::RawEvent<'_>,
            ) -> ::core::result::Result<::core::option::Option<Self>, #krate::event::DecodeFailure> {
                #(#decode_arms)*
                ::core::result::Result::Ok(::core::option::Option::None)
            }
        }
    };

    // Every stored kind (each event's kind and aliases, the retired kinds)
    // belongs to one event: checked at compile time, naming both events.
    let names = events.iter().map(attr::display_path);
    let aggregate_name = name.to_string();
    let unique_kinds = quote! {
        const _: () = {
            if let ::core::option::Option::Some(message) = #krate::event::__private::kind_clash(
                #aggregate_name,
                &[#( (#names, #kinds, #aliases) ),*],
                &[#(#retired),*],
            ) {
                ::core::panic!("{}", message.as_str());
            }
        };
    };

    // Spanned at the event, so a missing `Apply<E>` is pointed at in the
    // attribute.
    let apply_arms = events.iter().zip(variants).map(|(event, variant)| {
        let call = quote_spanned!(event.span()=> <Self as #apply<#event>>::apply);
        quote!(#event_enum::#variant(event) => #call(self, event),)
    });

    let snapshot_version_item = snapshot_version
        .as_ref()
        .map(|version| quote!(const SNAPSHOT_VERSION: u32 = #version;));
    let retired_item = (!retired.is_empty())
        .then(|| quote!(const RETIRED_KINDS: &'static [&'static str] = &[#(#retired),*];));
    let aggregate_impl = quote! {
        #[automatically_derived]
        impl #impl_generics #aggregate for #name #ty_generics #where_clause {
            const KIND: &'static str = #kind;
            #snapshot_version_item
            #retired_item
            type Id = #id;
            type Event = #event_enum;
            type Error = #error;

            fn apply(&mut self, event: &Self::Event) {
                match event {
                    #(#apply_arms)*
                }
            }
        }
    };

    quote! {
        #enum_item
        #(#from_impls)*
        #glue
        #unique_kinds
        #aggregate_impl
    }
}
