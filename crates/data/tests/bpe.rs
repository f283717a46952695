//! BPE training, saving and loading on a small slice of the Time Machine.

mod common;

use seqmodels_data::{BpeOptions, BpeTokenizer, Cleaning, LmCorpus};

fn slice_50k(text: &str) -> &str {
    let mut end = 50_000.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[test]
fn train_save_load_roundtrip() {
    let text = common::corpus_text("timemachine");
    let lines = Cleaning::D2l.apply(slice_50k(&text));
    let opts = BpeOptions { vocab_size: 300, special_tokens: vec!["<pad>".into()], ..Default::default() };
    let tok = BpeTokenizer::train(&lines, &opts).unwrap();
    assert_eq!(tok.vocab_size(), 300);
    assert_eq!(tok.unk_token().as_deref(), Some("<unk>"));

    let sentence = "the time traveller was expounding a recondite matter to us";
    let ids = tok.encode(sentence).unwrap();
    assert!(ids.len() < sentence.len() / 2, "merges shorten the text: {} ids", ids.len());
    assert_eq!(tok.decode(&ids).unwrap(), sentence);
    let pieces = tok.encode_tokens("the time").unwrap();
    assert_eq!(pieces, ["the", "Ġtime"], "byte-level pieces");
    assert_eq!(tok.vocab().unwrap().encode(&pieces), tok.encode("the time").unwrap());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let loaded = BpeTokenizer::load(&path).unwrap();
    assert_eq!(loaded.encode(sentence).unwrap(), ids);
    assert_eq!(loaded.vocab_size(), 300);

    let vocab = loaded.vocab().unwrap();
    assert_eq!(vocab.len(), 300);
    assert_eq!(vocab.token(0), Some("<unk>"));
    assert_eq!(vocab.get("<pad>"), Some(1));
    // Characters never seen in training become <unk>.
    assert_eq!(loaded.encode("é").unwrap(), vec![0, 0]);
}

#[test]
fn corpus_with_bpe() {
    let text = common::corpus_text("timemachine");
    let slice = slice_50k(&text);
    let lines = Cleaning::D2l.apply(slice);
    let tok = BpeTokenizer::train(&lines, &BpeOptions { vocab_size: 500, ..Default::default() }).unwrap();
    let corpus = LmCorpus::build_bpe(slice, Cleaning::D2l, &tok, None).unwrap();
    let chars: usize = lines.iter().map(|l| l.len()).sum();
    assert!(corpus.len() < chars / 2, "{} tokens for {chars} chars", corpus.len());
    assert_eq!(corpus.vocab.len(), 500);
    let truncated = LmCorpus::build_bpe(slice, Cleaning::D2l, &tok, Some(100)).unwrap();
    assert_eq!(truncated.ids[..], corpus.ids[..100]);
}

#[test]
fn loads_a_tokenizer_written_elsewhere() {
    // A hand-written tokenizer.json with a word-level model and no unknown token in the BPE sense.
    let json = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}, "unk_token": "[UNK]"}
    }"#;
    let tok = BpeTokenizer::from_json(json).unwrap();
    assert_eq!(tok.encode("hello world again").unwrap(), vec![1, 2, 0]);
    let vocab = tok.vocab().unwrap();
    assert_eq!(vocab.len(), 4, "no known unk token: <unk> is appended");
    assert_eq!(vocab.unk_index(), 3);
}

#[test]
fn zero_vocab_size_and_empty_texts() {
    let err = BpeTokenizer::train(&["abc"], &BpeOptions { vocab_size: 0, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("vocab_size"), "{err}");
    assert!(BpeTokenizer::train(&["", ""], &BpeOptions::default()).is_err());
}
