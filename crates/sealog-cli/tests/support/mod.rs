pub mod cli;
pub mod peers;
