mod datapath;
mod failover;
mod packets;
