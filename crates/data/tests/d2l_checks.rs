//! The d2l book's corpus statistics and preprocessing figures, checked on the shared corpora.

mod common;

use seqmodels_data::clean::{clean_d2l_lines, clean_d2l_v1};
use seqmodels_data::stats::{frequencies, ngram_counts};
use seqmodels_data::vocab::count_tokens;
use seqmodels_data::{fit_zipf, Cleaning, CorpusOptions, CorpusStats, LmCorpus, TokenLevel, VocabOptions, VocabOrder};

fn options(cleaning: Cleaning, level: TokenLevel) -> CorpusOptions {
    CorpusOptions { cleaning, level, ..CorpusOptions::default() }
}

#[test]
fn timemachine_chars_d2l() {
    let text = common::corpus_text("timemachine");
    let corpus = LmCorpus::build(&text, &options(Cleaning::D2l, TokenLevel::Char)).unwrap();
    assert_eq!(corpus.len(), 170_580);
    assert_eq!(corpus.vocab.len(), 28);
    assert_eq!(&corpus.vocab.tokens()[..4], ["<unk>", " ", "e", "t"]);
    let stats = CorpusStats::compute(&corpus.ids, &corpus.vocab, 3);
    assert_eq!(stats.distinct, 27);
    assert_eq!(stats.top, vec![(" ".to_string(), 29_927), ("e".to_string(), 17_838), ("t".to_string(), 13_515)]);
    // The first line is "the time machine by h g wells".
    assert_eq!(corpus.tokens()[..16].concat(), "the time machine");
}

#[test]
fn timemachine_words_d2l() {
    let text = common::corpus_text("timemachine");
    let corpus = LmCorpus::build(&text, &options(Cleaning::D2l, TokenLevel::Word)).unwrap();
    assert_eq!(corpus.len(), 32_775);
    assert_eq!(corpus.vocab.len(), 4_580);
    let stats = CorpusStats::compute(&corpus.ids, &corpus.vocab, 10);
    assert_eq!(stats.distinct, 4_579);
    assert_eq!(stats.top[0], ("the".to_string(), 2_261));
    let top: Vec<&str> = stats.top.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(top, ["the", "i", "and", "of", "a", "to", "was", "in", "that", "my"]);
    let alpha = stats.zipf_alpha.unwrap();
    assert!((alpha - 1.0353).abs() < 1e-3, "zipf alpha {alpha}");
    assert_eq!(corpus.vocab.index("the"), 1);
}

#[test]
fn timemachine_d2l_v1() {
    let text = common::corpus_text("timemachine");
    assert_eq!(clean_d2l_v1(&text).len(), 173_428);
    let opts = CorpusOptions {
        cleaning: Cleaning::D2lV1,
        vocab: VocabOptions { order: VocabOrder::Alphabetical, ..Default::default() },
        ..CorpusOptions::default()
    };
    let corpus = LmCorpus::build(&text, &opts).unwrap();
    assert_eq!(corpus.len(), 173_428);
    assert_eq!(corpus.vocab.len(), 28);
    assert_eq!(&corpus.vocab.tokens()[..3], [" ", "<unk>", "a"]);
    assert_eq!(corpus.vocab.unk_index(), 1);
    // Words are the same whichever edition cleans them.
    let words = LmCorpus::build(&text, &options(Cleaning::D2lV1, TokenLevel::Word)).unwrap();
    assert_eq!(words.len(), 32_775);
}

#[test]
fn max_tokens_keeps_full_vocab() {
    let text = common::corpus_text("timemachine");
    let opts = CorpusOptions { max_tokens: Some(10_000), ..options(Cleaning::D2l, TokenLevel::Char) };
    let corpus = LmCorpus::build(&text, &opts).unwrap();
    assert_eq!((corpus.len(), corpus.vocab.len()), (10_000, 28));
    let opts = CorpusOptions { max_tokens: Some(10_000_000), ..opts };
    assert_eq!(LmCorpus::build(&text, &opts).unwrap().len(), 170_580);
}

#[test]
fn word_eol_token() {
    let text = common::corpus_text("timemachine");
    let opts = CorpusOptions { eol_token: Some("<eol>".into()), ..options(Cleaning::D2l, TokenLevel::Word) };
    let corpus = LmCorpus::build(&text, &opts).unwrap();
    let non_empty_lines = clean_d2l_lines(&text).iter().filter(|l| !l.is_empty()).count();
    assert_eq!(corpus.len(), 32_775 + non_empty_lines);
    assert_eq!(corpus.vocab.len(), 4_581);
    assert_eq!(corpus.tokens()[..5], ["the", "time", "machine", "by", "h"]);
}

#[test]
fn min_freq_and_reserved() {
    let text = common::corpus_text("timemachine");
    let opts = CorpusOptions {
        vocab: VocabOptions { min_freq: 5, reserved_tokens: vec!["<pad>".into()], ..Default::default() },
        ..options(Cleaning::D2l, TokenLevel::Word)
    };
    let corpus = LmCorpus::build(&text, &opts).unwrap();
    let lines = clean_d2l_lines(&text);
    let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
    let frequent = count_tokens(&words).iter().filter(|(_, n)| *n >= 5).count();
    assert_eq!(corpus.vocab.len(), 2 + frequent);
    assert_eq!(corpus.vocab.tokens()[..3], ["<unk>", "<pad>", "the"]);
    assert!(corpus.ids.contains(&0), "rare words map to <unk>");
}

#[test]
fn tinyshakespeare_no_cleaning() {
    let text = common::corpus_text("tinyshakespeare");
    let corpus = LmCorpus::build(&text, &options(Cleaning::None, TokenLevel::Char)).unwrap();
    assert_eq!(corpus.len(), 1_115_394);
    assert_eq!(corpus.vocab.len(), 66);
    let stats = CorpusStats::compute(&corpus.ids, &corpus.vocab, 1);
    assert_eq!(stats.distinct, 65);
    assert!(corpus.vocab.contains("\n") && corpus.vocab.contains("Q") && corpus.vocab.contains("!"));
}

#[test]
fn ngrams_of_timemachine_words() {
    let text = common::corpus_text("timemachine");
    let corpus = LmCorpus::build(&text, &options(Cleaning::D2l, TokenLevel::Word)).unwrap();
    let v = &corpus.vocab;
    let bigrams = ngram_counts(&corpus.ids, 2);
    let trigrams = ngram_counts(&corpus.ids, 3);
    assert_eq!(v.decode(&bigrams[0].ids), ["of", "the"]);
    assert_eq!(v.decode(&trigrams[0].ids), ["the", "time", "traveller"]);
    assert_eq!(bigrams.iter().map(|c| c.count).sum::<usize>(), 32_774);
    let (a1, a2, a3) = (
        fit_zipf(&frequencies(&ngram_counts(&corpus.ids, 1))).unwrap().alpha,
        fit_zipf(&frequencies(&bigrams)).unwrap().alpha,
        fit_zipf(&frequencies(&trigrams)).unwrap().alpha,
    );
    assert!(a1 > a2 && a2 > a3 && a3 > 0.0, "{a1} {a2} {a3}");
}
