"""The training stages: one public module per family of trained networks, all on one runner.

=====================  ============================  ======================================
subcommand             module                        writes
=====================  ============================  ======================================
``train``              :mod:`.dense`                 dense/ (init.pt = θ0, checkpoint.pt)
``imp-round``          :mod:`.imp`                   imp-{criterion}[-rate{r}]/round{k}/
``oneshot``            :mod:`.oneshot`               oneshot-{criterion}/sparsity{pct}/
``control``            :mod:`.control`               control-{name}/round{k}/
``prune-init``         :mod:`.prune_init`            snip|grasp/sparsity{pct}/
``structured-round``   :mod:`.structured`            structured-{criterion}/round{k}/
``kd-round``           :mod:`.kd`                    kd-{criterion}/round{k}/ (IMP + teacher)
``transfer``           :mod:`.transfer`              transfer/{A}-to-{B}/…/{method}/
=====================  ============================  ======================================

Each family module declares ``FAMILY`` (:mod:`.family`); :mod:`.methods` is the registry that
lists them. :mod:`.spec` parses the config slice a job computes from; :mod:`.runner` trains,
evaluates and writes a run folder (``checkpoint.pt``, ``mask.pt``, ``metrics.json``,
``predictions.csv``). docs/ARCHITECTURE.md has the path contract and how to add a family.
Nothing is imported here: the Snakefile imports the registry without torch.
"""
