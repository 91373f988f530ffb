//! Mappings whose keys belong to more than one owner: every check's `interval`,
//! `timeout`, `legacy_metrics` beside its kind's keys; the registry keys that `kind:
//! registry` and `kind: kubernetes_images` share beside each kind's own.
//!
//! [`split`] hands each key of a YAML mapping first to a [`SharedKeys`] owner and the
//! rest to the kind's own struct (which rejects unknown keys), in one pass over the
//! same YAML events, so every error keeps its line and column and every key is
//! declared exactly once. [`split_listed`] does the same and reports an unknown key
//! with every key the mapping accepts, the owner's and the shared ones.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};

/// Keys taken out of a mapping before its owner's struct sees the rest.
pub trait SharedKeys {
    /// Reads the value of `key` from `map` and returns `true` if `key` is one of these
    /// keys; returns `false` (without reading) otherwise.
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;

    /// Called once the mapping is read: refuses a required key that was missing. Runs
    /// while the YAML reader is still at the mapping, so the error has its location.
    fn finish<E: serde::de::Error>(&self) -> Result<(), E> {
        Ok(())
    }
}

/// Deserializes `T` from a mapping whose shared keys go to `shared`.
pub fn split<'de, D, S, T>(deserializer: D, shared: &mut S) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    S: SharedKeys,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(SplitVisitor {
        shared,
        own: PhantomData,
    })
}

struct SplitVisitor<'s, S, T> {
    shared: &'s mut S,
    own: PhantomData<T>,
}

impl<'de, S: SharedKeys, T: Deserialize<'de>> Visitor<'de> for SplitVisitor<'_, S, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let own = T::deserialize(Split {
            inner: map,
            shared: &mut *self.shared,
        })?;
        self.shared.finish()?;
        Ok(own)
    }
}

/// The mapping as the owner's struct sees it: shared keys already taken out.
pub struct Split<'s, A, S> {
    inner: A,
    shared: &'s mut S,
}

impl<'s, A, S> Split<'s, A, S> {
    /// Wraps `inner`, giving its shared keys to `shared`.
    pub fn new(inner: A, shared: &'s mut S) -> Self {
        Split { inner, shared }
    }
}

impl<'de, A: MapAccess<'de>, S: SharedKeys> MapAccess<'de> for Split<'_, A, S> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            if !self.shared.take(&key, &mut self.inner)? {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

impl<'de, A: MapAccess<'de>, S: SharedKeys> Deserializer<'de> for Split<'_, A, S> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// Like [`split`], but a key that neither the owner nor `shared` knows fails as it
/// would if one struct held all the keys: the message lists the owner's keys, then
/// each list of `shared_names`, so what `--config.check` prints does not depend on who
/// owns which key.
pub fn split_listed<'de, D, S, T>(
    deserializer: D,
    shared: &mut S,
    shared_names: &'static [&'static [&'static str]],
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    S: SharedKeys,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(SplitListedVisitor {
        shared,
        shared_names,
        own: PhantomData,
    })
}

struct SplitListedVisitor<'s, S, T> {
    shared: &'s mut S,
    shared_names: &'static [&'static [&'static str]],
    own: PhantomData<T>,
}

impl<'de, S: SharedKeys, T: Deserialize<'de>> Visitor<'de> for SplitListedVisitor<'_, S, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let own = T::deserialize(ListedDeserializer {
            inner: Split {
                inner: map,
                shared: &mut *self.shared,
            },
            shared_names: self.shared_names,
        })?;
        self.shared.finish()?;
        Ok(own)
    }
}

/// The owner's key names followed by the shared ones: computed once per combination
/// and kept for the life of the process, as serde's `unknown_field` wants a `'static`
/// list.
fn listing(
    own: &'static [&'static str],
    shared: &'static [&'static [&'static str]],
) -> &'static [&'static str] {
    static LISTINGS: Mutex<Vec<&'static [&'static str]>> = Mutex::new(Vec::new());
    // A poisoned lock still holds a valid list (entries are only ever pushed whole).
    let mut listings = LISTINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let wanted = || {
        own.iter()
            .chain(shared.iter().flat_map(|names| names.iter()))
    };
    if let Some(found) = listings.iter().find(|l| l.iter().eq(wanted())) {
        return found;
    }
    let list: &'static [&'static str] = Vec::leak(wanted().copied().collect());
    listings.push(list);
    list
}

/// Learns the owner's field names from `deserialize_struct`, so that an unknown key
/// is reported with every key the mapping accepts (see [`split_listed`]).
struct ListedDeserializer<D> {
    inner: D,
    shared_names: &'static [&'static [&'static str]],
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ListedDeserializer<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(ListedVisitor {
            visitor,
            own: fields,
            shared_names: self.shared_names,
        })
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

struct ListedVisitor<V> {
    visitor: V,
    own: &'static [&'static str],
    shared_names: &'static [&'static [&'static str]],
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ListedVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(ListedMap {
            map,
            own: self.own,
            shared_names: self.shared_names,
        })
    }
}

/// The mapping with the shared keys already taken out: any key not among `own` is
/// unknown.
struct ListedMap<A> {
    map: A,
    own: &'static [&'static str],
    shared_names: &'static [&'static [&'static str]],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ListedMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.map.next_key::<String>()? else {
            return Ok(None);
        };
        if !self.own.contains(&key.as_str()) {
            let all = listing(self.own, self.shared_names);
            return Err(de::Error::unknown_field(&key, all));
        }
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Shared {
        a: Option<u32>,
    }

    impl SharedKeys for Shared {
        fn take<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<bool, A::Error> {
            match key {
                "a" => self.a = Some(map.next_value()?),
                _ => return Ok(false),
            }
            Ok(true)
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Own {
        b: u32,
    }

    fn read(text: &str) -> Result<(Shared, Own), String> {
        let mut shared = Shared::default();
        let own = serde_saphyr::with_deserializer_from_str(text, |de| split(de, &mut shared))
            .map_err(|e| e.to_string())?;
        Ok((shared, own))
    }

    #[test]
    fn shared_keys_go_to_their_owner_and_unknown_keys_stay_errors() {
        assert_eq!(
            read("a: 1\nb: 2\n").unwrap(),
            (Shared { a: Some(1) }, Own { b: 2 })
        );
        assert_eq!(read("b: 2\n").unwrap(), (Shared { a: None }, Own { b: 2 }));
        let e = read("b: 2\nc: 3\n").unwrap_err();
        assert!(e.contains("unknown field `c`"), "{e}");
        assert!(read("a: x\nb: 2\n").is_err());
    }

    #[test]
    fn unknown_keys_list_the_owners_keys_then_the_shared_ones() {
        const SHARED: &[&[&str]] = &[&["a"], &["z"]];
        let read = |text: &str| -> Result<(Shared, Own), String> {
            let mut shared = Shared::default();
            let own = serde_saphyr::with_deserializer_from_str(text, |de| {
                split_listed(de, &mut shared, SHARED)
            })
            .map_err(|e| e.to_string())?;
            Ok((shared, own))
        };
        assert_eq!(
            read("a: 1\nb: 2\n").unwrap(),
            (Shared { a: Some(1) }, Own { b: 2 })
        );
        let e = read("b: 2\nc: 3\n").unwrap_err();
        assert!(
            e.contains("unknown field `c`, expected one of b, a, z"),
            "{e}"
        );
        // The list is built once per combination.
        let own: &'static [&'static str] = &["b"];
        assert!(std::ptr::eq(listing(own, SHARED), listing(own, SHARED)));
    }
}
