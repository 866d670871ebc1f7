mod datapath;
mod packets;
