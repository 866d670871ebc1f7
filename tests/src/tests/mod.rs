mod datapath;
mod deploy;
mod failover;
mod flow_lifecycle;
mod flows_e2e;
mod packets;
