"""OPC UA plumbing shared by the client adapter and the northbound server (asyncua)."""
