mod datapath;
mod deploy;
mod failover;
mod icmp;
mod lengths;
mod packets;
mod pmtu;
