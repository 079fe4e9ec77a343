//! `#[derive(Wire)]` for `rtcroom-protocol`: everything about a wire type that serde's own
//! derives do not give, generated from the same declaration (the type and its `#[serde]`
//! attributes), so the format is written down once:
//!
//! - internally tagged enums (`#[serde(tag = "…")]`): their `Deserialize`, through a flat frame
//!   (every field of every variant optional and type-checked, then the fields the tag needs
//!   required), instead of serde's buffering one; pass-through values go straight to their own
//!   deserializer. Also `TAGS`, the tag values. `Serialize` stays serde's derive;
//! - unit enums: `ALL`, `as_str` and `parse` (the wire spellings); serde derives the rest;
//! - every type, behind the protocol's `js` feature: `FromJs`/`ToJs`, the browser codec over
//!   `JSON.parse` output and `JSON.stringify` input (`rtcroom_protocol::js`).
//!
//! Only the serde attributes the protocol uses are understood, and any other one is a compile
//! error, so the codecs cannot silently drift from serde. Generated code names `crate::js`:
//! the derive is for `rtcroom-protocol` itself.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{
    ext::IdentExt, meta::ParseNestedMeta, parse_macro_input, parse_quote, Attribute, Data, DeriveInput,
    Error, Fields, Generics, Ident, LitStr, Path, Result, Type,
};

#[proc_macro_derive(Wire, attributes(serde))]
pub fn derive_wire(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(Error::into_compile_error).into()
}

/// serde's `rename_all` rules, applied as serde applies them (`serde_derive/src/internals/case.rs`).
#[derive(Clone, Copy)]
enum Rule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl Rule {
    fn parse(name: &str) -> Option<Rule> {
        Some(match name {
            "lowercase" => Rule::Lower,
            "UPPERCASE" => Rule::Upper,
            "PascalCase" => Rule::Pascal,
            "camelCase" => Rule::Camel,
            "snake_case" => Rule::Snake,
            "SCREAMING_SNAKE_CASE" => Rule::ScreamingSnake,
            "kebab-case" => Rule::Kebab,
            "SCREAMING-KEBAB-CASE" => Rule::ScreamingKebab,
            _ => return None,
        })
    }

    /// A variant name (PascalCase in Rust).
    fn variant(self, name: &str) -> String {
        match self {
            Rule::Pascal => name.to_owned(),
            Rule::Lower => name.to_ascii_lowercase(),
            Rule::Upper => name.to_ascii_uppercase(),
            Rule::Camel => name[..1].to_ascii_lowercase() + &name[1..],
            Rule::Snake => {
                let mut snake = String::new();
                for (i, ch) in name.char_indices() {
                    if i > 0 && ch.is_uppercase() {
                        snake.push('_');
                    }
                    snake.push(ch.to_ascii_lowercase());
                }
                snake
            }
            Rule::ScreamingSnake => Rule::Snake.variant(name).to_ascii_uppercase(),
            Rule::Kebab => Rule::Snake.variant(name).replace('_', "-"),
            Rule::ScreamingKebab => Rule::ScreamingSnake.variant(name).replace('_', "-"),
        }
    }

    /// A field name (snake_case in Rust).
    fn field(self, name: &str) -> String {
        match self {
            Rule::Lower | Rule::Snake => name.to_owned(),
            Rule::Upper | Rule::ScreamingSnake => name.to_ascii_uppercase(),
            Rule::Pascal => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for ch in name.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            Rule::Camel => {
                let pascal = Rule::Pascal.field(name);
                pascal[..1].to_ascii_lowercase() + &pascal[1..]
            }
            Rule::Kebab => name.replace('_', "-"),
            Rule::ScreamingKebab => name.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Place {
    Container,
    Variant,
    Field,
}

/// The serde attributes of one item.
#[derive(Default)]
struct Attrs {
    tag: Option<String>,
    rename: Option<String>,
    rename_all: Option<Rule>,
    rename_all_fields: Option<Rule>,
    default: bool,
    skip_serializing_if: Option<Path>,
}

fn lit(meta: &ParseNestedMeta) -> Result<String> {
    Ok(meta.value()?.parse::<LitStr>()?.value())
}

fn rule(meta: &ParseNestedMeta) -> Result<Rule> {
    Rule::parse(&lit(meta)?).ok_or_else(|| meta.error("unknown rename_all rule"))
}

fn serde_attrs(list: &[Attribute], place: Place) -> Result<Attrs> {
    let mut out = Attrs::default();
    for attr in list.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let key = meta.path.get_ident().map(Ident::to_string).unwrap_or_default();
            match (place, key.as_str()) {
                (Place::Container, "tag") => out.tag = Some(lit(&meta)?),
                (Place::Container | Place::Variant, "rename_all") => out.rename_all = Some(rule(&meta)?),
                (Place::Container, "rename_all_fields") => out.rename_all_fields = Some(rule(&meta)?),
                // The Rust name of the type: not on the wire.
                (Place::Container, "rename") => drop(lit(&meta)?),
                (Place::Variant | Place::Field, "rename") => out.rename = Some(lit(&meta)?),
                (Place::Field, "default") if meta.input.is_empty() || meta.input.peek(syn::Token![,]) => {
                    out.default = true
                }
                (Place::Field, "skip_serializing_if") => {
                    out.skip_serializing_if = Some(syn::parse_str(&lit(&meta)?)?)
                }
                _ => {
                    return Err(meta.error(
                        "derive(Wire) does not know this serde attribute: teach it to \
                         rtcroom-protocol-derive (the flat and JS codecs) first",
                    ))
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// How a field is read when its key is missing (or, in a flat frame, `null`).
#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// The value must be there.
    Required,
    /// `Option<T>`: `None`.
    Optional,
    /// `#[serde(default)]`: `T::default()`.
    Default,
}

struct Field {
    member: Ident,
    wire: String,
    ty: Type,
    need: Need,
    skip_serializing_if: Option<Path>,
}

impl Field {
    /// `T` for `Option<T>` (recognised by name, as serde does), else the type itself.
    fn inner(&self) -> &Type {
        option_inner(&self.ty).unwrap_or(&self.ty)
    }
}

fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (last.ident == "Option", args.args.first()) {
        (true, Some(syn::GenericArgument::Type(inner))) if path.qself.is_none() && args.args.len() == 1 => {
            Some(inner)
        }
        _ => None,
    }
}

fn named_fields(fields: &Fields, rule: Option<Rule>) -> Result<Vec<Field>> {
    let named = match fields {
        Fields::Named(named) => &named.named,
        Fields::Unit => return Ok(Vec::new()),
        Fields::Unnamed(_) => {
            return Err(Error::new_spanned(
                fields,
                "derive(Wire): tuple fields are not supported",
            ))
        }
    };
    named
        .iter()
        .map(|field| {
            let attrs = serde_attrs(&field.attrs, Place::Field)?;
            let member = field
                .ident
                .clone()
                .ok_or_else(|| Error::new_spanned(field, "unnamed field"))?;
            let name = member.unraw().to_string();
            let wire = attrs
                .rename
                .unwrap_or_else(|| rule.map_or_else(|| name.clone(), |r| r.field(&name)));
            // An `Option` is `None` when missing, with or without `default`.
            let need = if option_inner(&field.ty).is_some() {
                Need::Optional
            } else if attrs.default {
                Need::Default
            } else {
                Need::Required
            };
            Ok(Field {
                member,
                wire,
                ty: field.ty.clone(),
                need,
                skip_serializing_if: attrs.skip_serializing_if,
            })
        })
        .collect()
}

/// `generics` with `bound` added to every type parameter.
fn bounded(generics: &Generics, bound: syn::TypeParamBound) -> Generics {
    let mut generics = generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(bound.clone());
    }
    generics
}

/// Writes one field into the object `__o`, unless `skip_serializing_if` says to leave it out.
fn put(field: &Field, value: TokenStream) -> TokenStream {
    let wire = &field.wire;
    match &field.skip_serializing_if {
        // The same test, written so no `null` branch is left for the optimizer to remove.
        Some(skip) if option_inner(&field.ty).is_some() && is_path(skip, &["Option", "is_none"]) => quote! {
            if let ::core::option::Option::Some(__x) = #value {
                crate::js::put(&__o, #wire, crate::js::ToJs::to_js(__x));
            }
        },
        Some(skip) => quote! {
            if !#skip(#value) {
                crate::js::put(&__o, #wire, crate::js::ToJs::to_js(#value));
            }
        },
        None => quote!(crate::js::put(&__o, #wire, crate::js::ToJs::to_js(#value));),
    }
}

fn is_path(path: &Path, names: &[&str]) -> bool {
    path.segments.len() == names.len() && path.segments.iter().zip(names).all(|(s, n)| s.ident == n)
}

fn expand(input: &DeriveInput) -> Result<TokenStream> {
    let attrs = serde_attrs(&input.attrs, Place::Container)?;
    match &input.data {
        Data::Struct(data) => {
            if attrs.tag.is_some() || attrs.rename_all_fields.is_some() {
                return Err(Error::new_spanned(input, "derive(Wire): tag on a struct"));
            }
            let fields = named_fields(&data.fields, attrs.rename_all)?;
            Ok(expand_struct(input, &fields))
        }
        Data::Enum(data) => {
            let mut variants = Vec::new();
            for variant in &data.variants {
                let vattrs = serde_attrs(&variant.attrs, Place::Variant)?;
                let name = variant.ident.unraw().to_string();
                let wire = vattrs.rename.unwrap_or_else(|| {
                    attrs
                        .rename_all
                        .map_or_else(|| name.clone(), |r| r.variant(&name))
                });
                let fields = named_fields(&variant.fields, vattrs.rename_all.or(attrs.rename_all_fields))?;
                variants.push((variant.ident.clone(), wire, fields));
            }
            match &attrs.tag {
                Some(tag) => expand_tagged(input, tag, &variants),
                None if variants.iter().all(|(_, _, fields)| fields.is_empty()) => {
                    Ok(expand_unit_enum(input, &variants))
                }
                None => Err(Error::new_spanned(
                    input,
                    "derive(Wire): an enum with fields needs #[serde(tag = \"…\")]",
                )),
            }
        }
        Data::Union(_) => Err(Error::new_spanned(
            input,
            "derive(Wire): unions are not supported",
        )),
    }
}

fn expand_struct(input: &DeriveInput, fields: &[Field]) -> TokenStream {
    let name = &input.ident;
    let from = bounded(&input.generics, parse_quote!(crate::js::FromJs));
    let (from_impl, ty_generics, from_where) = from.split_for_impl();
    let to = bounded(&input.generics, parse_quote!(crate::js::ToJs));
    let (to_impl, _, to_where) = to.split_for_impl();
    let reads = fields.iter().map(|f| {
        let (member, wire, ty) = (&f.member, &f.wire, &f.ty);
        match f.need {
            Need::Default => quote!(#member: crate::js::field_or_default::<#ty>(__v, #wire)?),
            Need::Required | Need::Optional => quote!(#member: crate::js::field::<#ty>(__v, #wire)?),
        }
    });
    let puts = fields.iter().map(|f| {
        let member = &f.member;
        put(f, quote!(&self.#member))
    });
    quote! {
        #[cfg(feature = "js")]
        impl #from_impl crate::js::FromJs for #name #ty_generics #from_where {
            fn from_js(__v: &crate::js::JsValue) -> ::core::option::Option<Self> {
                if !__v.is_object() {
                    return ::core::option::Option::None;
                }
                ::core::option::Option::Some(Self { #(#reads,)* })
            }
        }

        #[cfg(feature = "js")]
        impl #to_impl crate::js::ToJs for #name #ty_generics #to_where {
            fn to_js(&self) -> crate::js::JsValue {
                let __o = crate::js::object();
                #(#puts)*
                __o.into()
            }
        }
    }
}

type Variant = (Ident, String, Vec<Field>);

fn expand_unit_enum(input: &DeriveInput, variants: &[Variant]) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let idents: Vec<_> = variants.iter().map(|(ident, _, _)| ident).collect();
    let wires: Vec<_> = variants.iter().map(|(_, wire, _)| wire).collect();
    let count = variants.len();
    quote! {
        impl #impl_generics #name #ty_generics #where_clause {
            /// Every variant, in declaration order.
            pub const ALL: [Self; #count] = [#(Self::#idents),*];

            /// The wire spelling (what serde writes).
            pub fn as_str(self) -> &'static str {
                match self {
                    #(Self::#idents => #wires,)*
                }
            }

            /// The variant with this wire spelling.
            pub fn parse(name: &str) -> ::core::option::Option<Self> {
                const NAMES: [&str; #count] = [#(#wires),*];
                Self::ALL.get(crate::position(&NAMES, name)?).copied()
            }
        }

        #[cfg(feature = "js")]
        impl #impl_generics crate::js::FromJs for #name #ty_generics #where_clause {
            fn from_js(__v: &crate::js::JsValue) -> ::core::option::Option<Self> {
                Self::parse(&crate::js::tag(__v)?)
            }
        }

        #[cfg(feature = "js")]
        impl #impl_generics crate::js::ToJs for #name #ty_generics #where_clause {
            fn to_js(&self) -> crate::js::JsValue {
                crate::js::JsValue::from_str(Self::as_str(*self))
            }
        }
    }
}

/// One key of a flat frame: the fields of all variants, merged by wire name.
struct Flat<'a> {
    wire: &'a str,
    inner: &'a Type,
    var: Ident,
}

fn same_type(a: &Type, b: &Type) -> bool {
    quote!(#a).to_string() == quote!(#b).to_string()
}

fn expand_tagged(input: &DeriveInput, tag: &str, variants: &[Variant]) -> Result<TokenStream> {
    let name = &input.ident;
    let generics = &input.generics;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let mut flat: Vec<Flat> = Vec::new();
    for field in variants.iter().flat_map(|(_, _, fields)| fields) {
        if field.wire == tag {
            return Err(Error::new_spanned(
                &field.member,
                "derive(Wire): a field named like the tag",
            ));
        }
        let inner = field.inner();
        match flat.iter().find(|f| f.wire == field.wire) {
            Some(seen) if !same_type(seen.inner, inner) => {
                return Err(Error::new_spanned(
                    &field.ty,
                    "derive(Wire): the same key with another type in another variant",
                ))
            }
            Some(_) => {}
            None => flat.push(Flat {
                wire: &field.wire,
                inner,
                var: format_ident!("__f{}", flat.len()),
            }),
        }
    }
    let var = |field: &Field| {
        &flat
            .iter()
            .find(|f| f.wire == field.wire)
            .expect("merged above")
            .var
    };

    let idents: Vec<_> = variants.iter().map(|(ident, _, _)| ident).collect();
    let wires: Vec<_> = variants.iter().map(|(_, wire, _)| wire).collect();
    let count = variants.len();

    // serde: the flat frame, derived by serde itself, then the variant the tag names.
    let frame_fields = flat.iter().map(
        |Flat { wire, inner, var }| quote!(#[serde(rename = #wire)] #var: ::core::option::Option<#inner>),
    );
    let serde_arms = variants.iter().map(|(ident, wire, fields)| {
        let inits = fields.iter().map(|f| {
            let (member, var) = (&f.member, var(f));
            match f.need {
                Need::Required => {
                    let missing = format!("{wire} needs `{}`", f.wire);
                    quote!(#member: __need(__f.#var, #missing)?)
                }
                Need::Optional => quote!(#member: __f.#var),
                Need::Default => quote!(#member: __f.#var.unwrap_or_default()),
            }
        });
        quote!(__Kind::#ident => #name::#ident { #(#inits,)* })
    });
    let mut de_generics = bounded(generics, parse_quote!(::serde::Deserialize<'de>));
    de_generics.params.insert(0, parse_quote!('de));
    let (de_impl, _, de_where) = de_generics.split_for_impl();

    // JS: the same flat reading over a `JSON.parse` result, and serde's writing order.
    let reads = flat.iter().map(|Flat { wire, inner, var }| {
        quote!(let #var = crate::js::field::<::core::option::Option<#inner>>(__v, #wire)?;)
    });
    let js_arms = variants.iter().map(|(ident, _, fields)| {
        let inits = fields.iter().map(|f| {
            let (member, var) = (&f.member, var(f));
            match f.need {
                Need::Required => quote!(#member: #var?),
                Need::Optional => quote!(#member: #var),
                Need::Default => quote!(#member: #var.unwrap_or_default()),
            }
        });
        quote!(Self::#ident { #(#inits,)* })
    });
    let indexes = 0..variants.len();
    let write_arms = variants.iter().map(|(ident, wire, fields)| {
        let bindings: Vec<_> = (0..fields.len()).map(|i| format_ident!("__b{i}")).collect();
        let members = fields.iter().map(|f| &f.member);
        let puts = fields.iter().zip(&bindings).map(|(f, b)| put(f, quote!(#b)));
        quote! {
            Self::#ident { #(#members: #bindings),* } => {
                crate::js::put_str(&__o, #tag, #wire);
                #(#puts)*
            }
        }
    });
    let from = bounded(generics, parse_quote!(crate::js::FromJs));
    let (from_impl, _, from_where) = from.split_for_impl();
    let to = bounded(generics, parse_quote!(crate::js::ToJs));
    let (to_impl, _, to_where) = to.split_for_impl();

    Ok(quote! {
        impl #impl_generics #name #ty_generics #where_clause {
            /// Every tag value, in declaration order.
            pub const TAGS: [&'static str; #count] = [#(#wires),*];
        }

        const _: () = {
            #[derive(::serde::Deserialize)]
            enum __Kind {
                #(#[serde(rename = #wires)] #idents,)*
            }

            #[derive(::serde::Deserialize)]
            struct __Frame #generics #where_clause {
                #[serde(rename = #tag)]
                __kind: __Kind,
                #(#frame_fields,)*
            }

            fn __need<T, E: ::serde::de::Error>(value: ::core::option::Option<T>, what: &'static str) -> ::core::result::Result<T, E> {
                value.ok_or_else(|| E::custom(what))
            }

            impl #de_impl ::serde::Deserialize<'de> for #name #ty_generics #de_where {
                fn deserialize<__D: ::serde::Deserializer<'de>>(__d: __D) -> ::core::result::Result<Self, __D::Error> {
                    let __f = <__Frame #ty_generics as ::serde::Deserialize<'de>>::deserialize(__d)?;
                    ::core::result::Result::Ok(match __f.__kind {
                        #(#serde_arms,)*
                    })
                }
            }
        };

        #[cfg(feature = "js")]
        impl #from_impl crate::js::FromJs for #name #ty_generics #from_where {
            fn from_js(__v: &crate::js::JsValue) -> ::core::option::Option<Self> {
                if !__v.is_object() {
                    return ::core::option::Option::None;
                }
                let __tag = crate::js::tag(&crate::js::get(__v, #tag))?;
                #(#reads)*
                ::core::option::Option::Some(match crate::position(&Self::TAGS, &__tag)? {
                    #(#indexes => #js_arms,)*
                    _ => return ::core::option::Option::None,
                })
            }
        }

        #[cfg(feature = "js")]
        impl #to_impl crate::js::ToJs for #name #ty_generics #to_where {
            fn to_js(&self) -> crate::js::JsValue {
                let __o = crate::js::object();
                match self {
                    #(#write_arms)*
                }
                __o.into()
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Rule;

    /// Expected values from serde_derive's own case tests.
    #[test]
    fn rename_rules_match_serde() {
        for (name, lower, upper, camel, snake, kebab) in [
            ("Outcome", "outcome", "OUTCOME", "outcome", "outcome", "outcome"),
            (
                "VeryTasty",
                "verytasty",
                "VERYTASTY",
                "veryTasty",
                "very_tasty",
                "very-tasty",
            ),
            ("A", "a", "A", "a", "a", "a"),
            ("Z42", "z42", "Z42", "z42", "z42", "z42"),
        ] {
            assert_eq!(Rule::Lower.variant(name), lower);
            assert_eq!(Rule::Upper.variant(name), upper);
            assert_eq!(Rule::Pascal.variant(name), name);
            assert_eq!(Rule::Camel.variant(name), camel);
            assert_eq!(Rule::Snake.variant(name), snake);
            assert_eq!(Rule::ScreamingSnake.variant(name), snake.to_ascii_uppercase());
            assert_eq!(Rule::Kebab.variant(name), kebab);
            assert_eq!(Rule::ScreamingKebab.variant(name), kebab.to_ascii_uppercase());
        }
        for (name, upper, pascal, camel, kebab) in [
            ("outcome", "OUTCOME", "Outcome", "outcome", "outcome"),
            ("very_tasty", "VERY_TASTY", "VeryTasty", "veryTasty", "very-tasty"),
            ("a", "A", "A", "a", "a"),
            ("z42", "Z42", "Z42", "z42", "z42"),
            (
                "sdp_m_line_index",
                "SDP_M_LINE_INDEX",
                "SdpMLineIndex",
                "sdpMLineIndex",
                "sdp-m-line-index",
            ),
        ] {
            assert_eq!(Rule::Lower.field(name), name);
            assert_eq!(Rule::Snake.field(name), name);
            assert_eq!(Rule::Upper.field(name), upper);
            assert_eq!(Rule::ScreamingSnake.field(name), upper);
            assert_eq!(Rule::Pascal.field(name), pascal);
            assert_eq!(Rule::Camel.field(name), camel);
            assert_eq!(Rule::Kebab.field(name), kebab);
            assert_eq!(Rule::ScreamingKebab.field(name), upper.replace('_', "-"));
        }
    }
}
