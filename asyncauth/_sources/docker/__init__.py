"""The Docker config source: the file docker and podman write, and the credential helpers it names.

One module per concern, data flowing one way:

* :mod:`.discovery` which file to read, from the environment (pure, plus ``stat``);
* :mod:`.configfile` the format: text to a :class:`~.configfile.DockerConfig` (pure);
* :mod:`.lookup` which entry answers for a resource (pure);
* :mod:`.loader` reading the file in a worker thread and noticing when it changed;
* :mod:`.helperprotocol` the docker-credential-helpers protocol: request and answer (pure);
* :mod:`.process` running one helper program, and nothing of it outliving the call;
* :mod:`.helperclient` one run per (helper, server URL), answers cached;
* :mod:`.resolver` :class:`~.resolver.DockerConfigResolver`, which puts them together.
"""
