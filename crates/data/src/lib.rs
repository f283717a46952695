//! Text preprocessing as d2l teaches it (work in progress).
