//! `#[derive(Projection)]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, GenericParam, LitStr, Path, Type, parse_quote};

use crate::attr::{self, Errors};
use crate::naming;

const EXPECTED: &[&str] = &["id", "metadata", "kind", "events"];

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    attr::require_struct(input, "Projection")?;
    let mut errors = Errors::default();
    let krate = attr::crate_path(&input.attrs, &mut errors);

    let mut id: Option<Type> = None;
    let mut metadata: Option<Type> = None;
    let mut kind: Option<LitStr> = None;
    let mut events: Option<Vec<Path>> = None;
    attr::parse_attributes(&input.attrs, "projection", &mut errors, |key, stream| {
        match key.to_string().as_str() {
            "id" => attr::set_once(&mut id, key, attr::type_value(key, stream)?),
            "metadata" => attr::set_once(&mut metadata, key, attr::type_value(key, stream)?),
            "kind" => attr::set_once(&mut kind, key, attr::kind_value(key, stream)?),
            "events" => attr::set_once(&mut events, key, attr::events_value(key, stream)?.paths),
            _ => Err(attr::unknown_key(key, "projection", EXPECTED)),
        }
    });
    errors.finish()?;

    let name = &input.ident;
    let id = id.unwrap_or_else(|| parse_quote!(::std::string::String));
    let metadata = metadata.unwrap_or_else(|| parse_quote!(()));
    let kind = kind.unwrap_or_else(|| naming::default_kind(name));
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    let declare = events.map(|events| {
        // A store parameter name the struct's own generics do not use.
        let mut store = format_ident!("S");
        while input.generics.params.iter().any(|param| match param {
            GenericParam::Type(param) => param.ident == store,
            GenericParam::Const(param) => param.ident == store,
            GenericParam::Lifetime(_) => false,
        }) {
            store = format_ident!("{}_", store);
        }
        let calls = events
            .iter()
            .map(|event| quote_spanned!(event.span()=> .events::<#event>()));
        quote! {
            fn declare<#store>(
                events: #krate::projection::ProjectionEvents<#store, Self>,
            ) -> #krate::projection::ProjectionEvents<#store, Self>
            where
                #store: #krate::store::EventStore<Id = Self::Id, Metadata = Self::Metadata>,
            {
                events #(#calls)*
            }
        }
    });

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::projection::Projection for #name #ty_generics #where_clause {
            const KIND: &'static str = #kind;
            type Id = #id;
            type Metadata = #metadata;
            #declare
        }
    })
}
