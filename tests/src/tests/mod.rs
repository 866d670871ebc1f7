mod datapath;
mod deploy;
mod failover;
mod flow_lifecycle;
mod icmp;
mod lengths;
mod packets;
mod pmtu;
