"""What the revealed values leak (DESIGN §2b, the paper's §6): reconstruction over repeated queries.

MPC hides each party's inputs, not what is revealed, and each party chooses its own inputs
freely. Two attacks on the influence appraiser, each written against what its party really has:

- ``data_owner``: the data owner's crafted candidates recover the model (θ̂ and v);
- ``model_owner``: the model owner's crafted weights recover the data (G(D_a) of a candidate);

against the honest counterparts in ``parties``, under a defence from ``defences``; ``attack``
(``run_attack``) measures one attack under one defence and returns the curve: relative L2 error
of the attacker's estimate (``trace``) against the number of values or bits revealed. Only the
scorer reads the truth; the attackers see their own inputs, the public metadata and what is
revealed.
"""
