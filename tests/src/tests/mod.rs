mod datapath;
mod deploy;
mod failover;
mod flow_lifecycle;
mod packets;
