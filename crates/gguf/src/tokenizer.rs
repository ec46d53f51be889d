//! The GPT-2 byte-level BPE tokenizer stored in a GGUF (`tokenizer.ggml.model = "gpt2"`).
//!
//! Encoding: special tokens (control / user-defined types) are split out first; the rest is
//! pre-tokenized by the regexes llama.cpp uses for `tokenizer.ggml.pre` (applied in sequence,
//! each splitting the fragments of the previous one into matches and gaps), each piece's bytes
//! are mapped to GPT-2's printable byte alphabet, and merges are applied lowest rank first.
//! Decoding maps the byte alphabet back to bytes.
//!
//! Not here: SentencePiece (`"llama"`) vocabularies, normalizers, chat templates.
//! References: GPT-2's `bytes_to_unicode` (encoder.py), llama.cpp llama-vocab.cpp (regexes
//! per pre-tokenizer type), HF tokenizers (SmolLM2: `Digits(individual_digits)` then
//! `ByteLevel`).

use crate::{Gguf, GgufError};
use fancy_regex::Regex;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// GPT-2's printable byte alphabet: printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100 onwards in byte order.
pub fn byte_to_unicode(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('?')
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Pre-tokenizer regexes for a `tokenizer.ggml.pre` value (unknown values use GPT-2's).
fn pre_regexes(pre: &str) -> Vec<&'static str> {
    match pre {
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2_RE]
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![LLAMA3_RE],
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "hunyuan" => vec![QWEN2_RE],
        _ => vec![GPT2_RE],
    }
}

/// A pre-tokenizer regex, compiled once per process (compiling costs milliseconds).
fn compiled(pattern: &'static str) -> Result<Regex, GgufError> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Regex>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cache.get(pattern) {
        return Ok(r.clone());
    }
    let r = Regex::new(pattern).map_err(|e| tok_err(format!("pre-tokenizer regex: {e}")))?;
    cache.insert(pattern, r.clone());
    Ok(r)
}

/// Token types (`tokenizer.ggml.token_type`, llama.cpp `llama_token_type`).
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;

/// A byte-level BPE vocabulary.
pub struct Tokenizer {
    tokens: Vec<String>,
    types: Vec<i32>,
    ids: HashMap<String, u32>,
    ranks: HashMap<String, u32>,
    regexes: Vec<Regex>,
    /// Control and user-defined tokens, longest first.
    specials: Vec<(String, u32)>,
    byte_of: HashMap<char, u8>,
    pub pre: String,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

fn tok_err(msg: impl Into<String>) -> GgufError {
    GgufError::Tokenizer(msg.into())
}

impl Tokenizer {
    /// Reads the vocabulary from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, GgufError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(GgufError::BadValue {
                key: "tokenizer.ggml.model".into(),
                value: format!("{model:?}"),
                reason: "only GPT-2 byte-level BPE (\"gpt2\") is supported",
            });
        }
        let tokens = g
            .get_array("tokenizer.ggml.tokens")?
            .as_strings()
            .ok_or_else(|| GgufError::WrongType {
                key: "tokenizer.ggml.tokens".into(),
                expected: "array of strings",
                found: "another array",
            })?
            .to_vec();
        let types = match g
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
        {
            Some(a) => a
                .to_i64s()
                .ok_or_else(|| GgufError::WrongType {
                    key: "tokenizer.ggml.token_type".into(),
                    expected: "array of integers",
                    found: "another array",
                })?
                .into_iter()
                .map(|t| i32::try_from(t).unwrap_or(0))
                .collect(),
            None => vec![TOKEN_NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(GgufError::BadValue {
                key: "tokenizer.ggml.token_type".into(),
                value: format!("{} entries", types.len()),
                reason: "must have one entry per token",
            });
        }
        let merges = g
            .get_array("tokenizer.ggml.merges")?
            .as_strings()
            .ok_or_else(|| GgufError::WrongType {
                key: "tokenizer.ggml.merges".into(),
                expected: "array of strings",
                found: "another array",
            })?;
        let pre = g
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default")
            .to_string();
        let id = |k: &str| -> Option<u32> {
            g.get(k)
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len())
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let add_bos = g
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Tokenizer::new(tokens, types, merges, &pre, bos, eos, add_bos)
    }

    /// A tokenizer from its parts (`merges` as `"left right"` strings, in rank order).
    pub fn new(
        tokens: Vec<String>,
        types: Vec<i32>,
        merges: &[String],
        pre: &str,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> Result<Tokenizer, GgufError> {
        if tokens.len() > u32::MAX as usize {
            return Err(tok_err("more than 2^32 tokens"));
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            // First occurrence wins, as in llama.cpp.
            ids.entry(t.clone()).or_insert(i as u32);
        }
        let mut ranks = HashMap::with_capacity(merges.len());
        for (r, m) in merges.iter().enumerate() {
            if !m.contains(' ') {
                return Err(tok_err(format!("merge #{r} {m:?} has no space separator")));
            }
            ranks.entry(m.clone()).or_insert(r as u32);
        }
        let regexes = pre_regexes(pre)
            .into_iter()
            .map(compiled)
            .collect::<Result<Vec<_>, _>>()?;
        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (t, &ty))| {
                (ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED) && !t.is_empty()
            })
            .map(|(i, (t, _))| (t.clone(), i as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_of = (0..=255u8).map(|b| (byte_to_unicode(b), b)).collect();
        Ok(Tokenizer {
            tokens,
            types,
            ids,
            ranks,
            regexes,
            specials,
            byte_of,
            pre: pre.to_string(),
            bos,
            eos,
            add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token ids of `text`; `parse_special` turns control/user-defined token texts into
    /// their ids (as llama.cpp's `parse_special`), and a BOS is prepended when the vocabulary
    /// asks for it (`tokenizer.ggml.add_bos_token`).
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, GgufError> {
        let mut out = Vec::new();
        if self.add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        let mut rest = text;
        let mut plain_start = 0;
        let mut i = 0;
        while parse_special && i < rest.len() {
            let hit = self
                .specials
                .iter()
                .find(|(s, _)| rest[i..].starts_with(s.as_str()));
            match hit {
                Some((s, id)) => {
                    self.encode_plain(&rest[plain_start..i], &mut out)?;
                    out.push(*id);
                    rest = &rest[i + s.len()..];
                    plain_start = 0;
                    i = 0;
                }
                None => {
                    i += rest[i..].chars().next().map_or(1, |c| c.len_utf8());
                }
            }
        }
        self.encode_plain(&rest[plain_start..], &mut out)?;
        Ok(out)
    }

    /// Pre-tokenizes: the pieces BPE runs on.
    pub fn pre_tokenize<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, GgufError> {
        let mut frags = vec![text];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                let mut last = 0;
                for m in re.find_iter(f) {
                    let m = m.map_err(|e| tok_err(format!("pre-tokenizer: {e}")))?;
                    if m.start() > last {
                        next.push(&f[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < f.len() {
                    next.push(&f[last..]);
                }
            }
            frags = next;
        }
        Ok(frags)
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), GgufError> {
        if text.is_empty() {
            return Ok(());
        }
        for piece in self.pre_tokenize(text)? {
            let word: String = piece.bytes().map(byte_to_unicode).collect();
            self.bpe(&word, out)?;
        }
        Ok(())
    }

    /// Merges the symbols of one byte-encoded word, lowest merge rank first.
    fn bpe(&self, word: &str, out: &mut Vec<u32>) -> Result<(), GgufError> {
        if let Some(&id) = self.ids.get(word) {
            if self.types.get(id as usize).copied() == Some(TOKEN_NORMAL) || self.ranks.is_empty() {
                out.push(id);
                return Ok(());
            }
        }
        let mut syms: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        let mut key = String::new();
        loop {
            let mut best: Option<(u32, usize)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                key.clear();
                key.push_str(&syms[i]);
                key.push(' ');
                key.push_str(&syms[i + 1]);
                if let Some(&r) = self.ranks.get(&key) {
                    if best.is_none_or(|(br, _)| r < br) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let (l, r) = (syms[i].clone(), syms[i + 1].clone());
            let mut merged = Vec::with_capacity(syms.len());
            let mut j = 0;
            while j < syms.len() {
                if j + 1 < syms.len() && syms[j] == l && syms[j + 1] == r {
                    merged.push(format!("{l}{r}"));
                    j += 2;
                } else {
                    merged.push(std::mem::take(&mut syms[j]));
                    j += 1;
                }
            }
            syms = merged;
        }
        for s in syms {
            match self.ids.get(&s) {
                Some(&id) => out.push(id),
                None => {
                    for c in s.chars() {
                        let id = self
                            .ids
                            .get(c.encode_utf8(&mut [0; 4]) as &str)
                            .ok_or_else(|| {
                                tok_err(format!("symbol {c:?} is not in the vocabulary"))
                            })?;
                        out.push(*id);
                    }
                }
            }
        }
        Ok(())
    }

    /// The bytes token `id` stands for (control tokens: their text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(t) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        let ty = self.types.get(id as usize).copied().unwrap_or(TOKEN_NORMAL);
        if ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED {
            return t.as_bytes().to_vec();
        }
        let mut b = Vec::with_capacity(t.len());
        for c in t.chars() {
            match self.byte_of.get(&c) {
                Some(&x) => b.push(x),
                None => b.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        b
    }

    /// Text of a token sequence (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{synthetic_vocab, SYNTHETIC_EOS};

    fn tiny() -> Tokenizer {
        let v = synthetic_vocab(300).unwrap();
        Tokenizer::new(
            v.tokens,
            v.types,
            &v.merges,
            "smollm",
            Some(v.eos),
            Some(v.eos),
            false,
        )
        .unwrap()
    }

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let chars: std::collections::HashSet<char> = (0..=255u8).map(byte_to_unicode).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(byte_to_unicode(b' '), 'Ġ');
        assert_eq!(byte_to_unicode(b'\n'), 'Ċ');
        assert_eq!(byte_to_unicode(b'A'), 'A');
    }

    #[test]
    fn gpt2_pre_tokenizer_splits_like_the_regex() {
        let t = tiny();
        assert_eq!(
            t.pre_tokenize("Hello world's  fine 123!!\n").unwrap(),
            vec!["Hello", " world", "'s", " ", " fine", " ", "1", "2", "3", "!!", "\n"]
        );
    }

    #[test]
    fn merges_apply_lowest_rank_first_and_round_trip() {
        let t = tiny();
        // " the" -> "Ġ t" (rank 0) then "h e" (1) then "Ġt he" (2) -> one token.
        let ids = t.encode(" the", false).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(t.token(ids[0]), Some("Ġthe"));
        // "in" merges, "x" does not.
        let ids = t.encode("inx", false).unwrap();
        assert_eq!(
            ids.iter().map(|&i| t.token(i).unwrap()).collect::<Vec<_>>(),
            ["in", "x"]
        );
        for s in ["The cat sat on the mat.", "naïve café 12 ∑ 😀\n\ttabs", ""] {
            assert_eq!(t.decode(&t.encode(s, false).unwrap()), s);
        }
    }

    #[test]
    fn special_tokens_are_parsed_only_when_asked() {
        let t = tiny();
        let s = format!("a{SYNTHETIC_EOS}b");
        let with = t.encode(&s, true).unwrap();
        assert_eq!(with.len(), 3);
        assert_eq!(with[1], t.eos.unwrap());
        let without = t.encode(&s, false).unwrap();
        assert!(without.len() > 3);
        assert_eq!(t.decode(&with), s);
        assert_eq!(t.decode(&without), s);
    }
}
