//! Every kind of bad input gives a typed error with a clear message, never a panic.

mod common;

use seqmodels_data::{
    read_text_file, BpeTokenizer, Cleaning, CorpusOptions, Error, LmCorpus, Sampling, SeqDataLoader, TokenLevel, Vocab,
};

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.txt");
    let err = read_text_file(&path).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("absent.txt"));
    assert!(matches!(common::locator().read(path.to_str().unwrap()), Err(Error::MissingFile { .. })));
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.txt");
    std::fs::write(&path, "").unwrap();
    let err = read_text_file(&path).unwrap_err();
    assert!(matches!(err, Error::EmptyFile { .. }), "{err}");
    assert!(err.to_string().contains("empty.txt"), "{err}");
}

#[test]
fn nothing_left_after_cleaning() {
    let err = LmCorpus::build("1984 -- 2001!\n", &CorpusOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoTokens { .. }), "{err}");
    assert!(err.to_string().contains("d2l cleaning"), "{err}");
}

#[test]
fn invalid_utf8_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    std::fs::write(&path, b"caf\xc3\xa9 na\xefve\n").unwrap();
    let err = read_text_file(&path).unwrap_err();
    match &err {
        Error::InvalidUtf8 { offset, .. } => assert_eq!(*offset, 8),
        other => panic!("expected InvalidUtf8, got {other}"),
    }
    assert!(err.to_string().contains("byte offset 8"), "{err}");
}

#[test]
fn corpus_shorter_than_one_minibatch() {
    let corpus = LmCorpus::build("the time machine", &CorpusOptions::default()).unwrap();
    assert_eq!(corpus.len(), 16);
    let err = corpus.loader(4, 5, Sampling::Random, 0).unwrap_err();
    assert!(matches!(err, Error::CorpusTooShort { tokens: 16, needed: 25, .. }), "{err}");
    assert!(err.to_string().contains("batch_size 4 x num_steps 5"), "{err}");
    assert!(corpus.loader(2, 5, Sampling::Random, 0).is_ok());
    assert!(corpus.loader(2, 5, Sampling::Sequential, 0).is_ok());
    assert!(matches!(corpus.loader(3, 4, Sampling::Sequential, 0), Err(Error::CorpusTooShort { needed: 17, .. })));
    assert!(matches!(SeqDataLoader::new(vec![], 1, 1, Sampling::Sequential, 0), Err(Error::CorpusTooShort { .. })));
}

#[test]
fn malformed_vocab_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.json");
    std::fs::write(&path, r#"{"unk_token": "<unk>", "tokens": ["<unk>", "a",]}"#).unwrap();
    let err = Vocab::load(&path).unwrap_err();
    assert!(matches!(err, Error::VocabJson { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("vocab.json") && msg.contains("line 1"), "{msg}");

    std::fs::write(&path, r#"{"unk_token": "<unk>", "tokens": "abc"}"#).unwrap();
    assert!(matches!(Vocab::load(&path), Err(Error::VocabJson { .. })));
    std::fs::write(&path, r#"{"unk_token": "<unk>", "tokens": []}"#).unwrap();
    assert!(matches!(Vocab::load(&path), Err(Error::InvalidVocab { .. })));
    assert!(matches!(Vocab::load(dir.path().join("none.json")), Err(Error::MissingFile { .. })));
}

#[test]
fn malformed_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, r#"{"version": "1.0", "model": {"type": "BPE", "vocab": 12}}"#).unwrap();
    let err = BpeTokenizer::load(&path).unwrap_err();
    assert!(matches!(err, Error::TokenizerJson { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(BpeTokenizer::load(&path), Err(Error::TokenizerJson { .. })));
    assert!(matches!(BpeTokenizer::load(dir.path().join("none.json")), Err(Error::MissingFile { .. })));
}

#[test]
fn max_tokens_zero() {
    let opts = CorpusOptions { max_tokens: Some(0), ..CorpusOptions::default() };
    let err = LmCorpus::build("the time machine", &opts).unwrap_err();
    assert!(matches!(err, Error::ZeroMaxTokens), "{err}");
    assert!(err.to_string().contains("max_tokens"));
    let opts = CorpusOptions { level: TokenLevel::Word, cleaning: Cleaning::None, ..opts };
    assert!(matches!(LmCorpus::build("a b", &opts), Err(Error::ZeroMaxTokens)));
}
