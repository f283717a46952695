//! d2l "Text Preprocessing" (0.17 edition): read The Time Machine, clean every line, split it
//! into tokens, build a vocabulary and turn the text into indices.
//!
//! `cargo run --release --example text_preprocessing -- [--quick] [--out DIR]`

mod common;

use anyhow::Result;
use seqmodels_workspace::data::clean::clean_d2l_lines;
use seqmodels_workspace::data::tokenize::tokenize_lines;
use seqmodels_workspace::data::{plot_frequencies, FreqSeries, TokenLevel, Vocab, VocabOptions};

fn main() -> Result<()> {
    let args = common::Args::parse("text_preprocessing")?;

    // lines = read_time_machine(): re.sub('[^A-Za-z]+', ' ', line).strip().lower() per line
    let text = common::read_corpus("timemachine")?;
    let lines = clean_d2l_lines(&text);
    println!("# text lines: {}", lines.len());
    println!("{}", lines[0]);
    println!("{}", lines[10]);

    // tokens = tokenize(lines): one list of words per line; the first 11 lines
    let tokens = tokenize_lines(&lines, TokenLevel::Word);
    for line in tokens.iter().take(11) {
        println!("{line:?}");
    }

    // vocab = Vocab(tokens): <unk> first, then by descending frequency
    let flat: Vec<&str> = tokens.iter().flatten().copied().collect();
    let vocab = Vocab::build(&flat, &VocabOptions::default());
    let top: Vec<(&str, usize)> = vocab.tokens().iter().take(10).enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    println!("{top:?}");

    // for i in [0, 10]: print('words:', tokens[i]); print('indices:', vocab[tokens[i]])
    for i in [0, 10] {
        println!("words: {:?}", tokens[i]);
        println!("indices: {:?}", vocab.encode(&tokens[i]));
    }

    // corpus, vocab = load_corpus_time_machine(): characters of every line, concatenated
    let chars = tokenize_lines(&lines, TokenLevel::Char);
    let corpus: Vec<&str> = chars.iter().flatten().copied().collect();
    let char_vocab = Vocab::build(&corpus, &VocabOptions::default());
    println!("len(corpus), len(vocab) = ({}, {})", corpus.len(), char_vocab.len());
    let limited = common::time_machine_chars(10_000)?;
    println!("with max_tokens=10000: ({}, {})", limited.ids.len(), limited.vocab.len());

    // Not in the book: how the tokens are distributed, as a figure.
    let freqs = |v: &Vocab| v.token_freqs().iter().map(|(_, n)| *n).collect::<Vec<_>>();
    let series = [
        FreqSeries { label: format!("words ({} distinct)", vocab.len() - 1), freqs: freqs(&vocab) },
        FreqSeries { label: format!("characters ({} distinct)", char_vocab.len() - 1), freqs: freqs(&char_vocab) },
    ];
    let plot = args.out.join("token_frequencies.png");
    plot_frequencies(&plot, "The Time Machine: token frequency by rank", &series, None)?;
    println!("wrote {}", plot.display());
    Ok(())
}
