//! PyTorch-exact recurrent sequence models on candle.
//!
//! `RNN`, `LSTM` and `GRU` layers (multi-layer, bidirectional, dropout, LSTM projection,
//! variable lengths, unbatched input) and `RNNCell`, `LSTMCell`, `GRUCell`, with PyTorch's
//! parameter names, shapes, gate order, initialisation and equations, so that a PyTorch
//! `state_dict` saved with safetensors loads unchanged and ours loads back into PyTorch.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use seqmodels::{RnnConfig, LSTM};
//!
//! let varmap = VarMap::new(); // trainable parameters, PyTorch's default init
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let lstm = LSTM::new(RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::lstm(10, 20) }, vb)?;
//! let x = Tensor::randn(0f32, 1., (5, 3, 10), &Device::Cpu)?; // (L, N, input_size)
//! let (output, state) = lstm.forward(&x, None)?;
//! assert_eq!(output.dims(), &[5, 3, 40]);
//! assert_eq!(state.h.dims(), &[4, 3, 20]);
//! # Ok::<(), seqmodels::Error>(())
//! ```
#![warn(missing_docs)]

pub mod cell;
pub mod cell_modules;
pub mod config;
pub mod dropout;
pub mod error;
pub mod fused;
pub mod init;
pub mod layer_modules;
pub mod lengths;
pub mod linear;
pub mod loss;
pub mod memory;
pub mod parity;
pub mod pool;
pub mod quantized;
pub mod rnn_base;
pub mod simd;
pub mod spec;
pub mod state_dict;

pub use cell::{CellWeights, State};
pub use cell_modules::{Cell, GRUCell, LSTMCell, RNNCell};
pub use config::{CellConfig, CellKind, RnnConfig};
pub use error::{Error, Result};
pub use layer_modules::{LstmState, GRU, LSTM, RNN};
pub use rnn_base::{ForwardOptions, Implementation, RnnBase, SeqOutput, StackedState};
pub use spec::ModuleSpec;
pub use state_dict::{load_state_dict, save_state_dict, varmap_from_parameters, LoadOptions};
