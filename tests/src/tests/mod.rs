mod datapath;
mod deploy;
mod failover;
mod packets;
