"""The fixed text the lab's tokenizers are trained on (lab/models/generate.py).

Written for this project; any edit changes every generated tokenizer, hence the models' commit
SHAs that tests/lab/test_mirror.py pins.
"""

ENGLISH = """\
The lab mirror stands in for the Nexus server that the customer's intranet can reach. It serves
Python packages, Debian packages, raw files and model repositories from one loopback port, and
nothing else on the network is used. Every node in the lab is a small container that boots with
systemd, so the roles run against it the way they would run against a real GPU server.

A model repository holds a configuration file, a tokenizer and the weights. The weights are large,
so they are kept in Git LFS: the repository itself stores small pointer files, and the real content
is downloaded from the LFS server when the repository is cloned. A pointer names the object by its
SHA-256 digest and its size, which lets the client check that every byte arrived. A clone that
stops halfway leaves pointer files in place of weights; a service that starts on such a clone fails
later, when it tries to load the model. The role checks every file against its pointer before it
moves the new revision into place, and it pulls into a staging directory first.

The models in this lab are doubles. Their weights are random numbers drawn from a fixed seed, so
they generate noise, not answers. They have the shapes and the file layout of real models, which is
what the deployment needs to test: that the files arrive whole, that the revision is the pinned one,
that the tokenizer matches the configuration, and that the server can load them on a machine with
no GPU. A second revision changes the weights and one small file, so a test can move a node from
the first commit to the second and see that only the changed objects are fetched again.

Large language models are served by a controller, a model worker and an API server. The worker
loads the model on the GPU, the controller keeps the list of workers, and the API server answers
requests in the format that clients already know. The knowledge base splits documents into chunks,
turns each chunk into a vector with the embedding model, and stores the vectors in a database. When
a question comes in, the closest chunks are found and given to the language model with the question.
The answer is only as good as the chunks that were found, so the embedding model matters as much as
the language model does.

Each host reports what it changed. A second run on a converged host should change nothing, and a
run in check mode should say what it would do without doing it. When an input is wrong, the run
stops before it touches the host and names the variable that has to be fixed. These rules keep a
fleet of machines in the same state, one release after another, and make a failed upgrade easy to
roll back: the previous release is still on disk, and the current link points at one of them.

Throughput is measured against a plain copy of the same bytes from the same mirror. The ratio tells
how much the protocol costs: the batch requests, the pointer files, the checks. A cache host that
pulls once and then copies to every node over the local network saves the mirror from serving the
same files many times, which matters when the model is many gigabytes and the link is slow.
"""

CHINESE = """\
实验室镜像代替客户内网中的仓库服务器，在本机的一个端口上提供软件包、原始文件和模型仓库。
每个节点都是一个运行系统服务的小容器，部署脚本在它上面运行，就像在真正的显卡服务器上一样。
模型仓库包含配置文件、分词器和权重文件。权重文件很大，所以保存在大文件存储中，仓库里只有指针文件。
克隆仓库时，客户端根据指针下载真正的内容，并用哈希值检查每一个字节是否完整。
实验室里的模型都是替身，权重是用固定种子生成的随机数，所以它们只会生成噪声，不会回答问题。
但是它们的形状和文件结构与真实模型相同，这正是部署需要测试的内容。
知识库把文档切分成片段，用向量模型把每个片段变成向量，并存入向量数据库。
用户提问时，系统找到最相近的片段，把它们和问题一起交给大语言模型，生成回答。
回答的质量取决于找到的片段，所以向量模型和语言模型同样重要。
每台主机都报告自己改变了什么。第二次运行不应该改变任何东西，检查模式只说明将要做什么。
输入错误时，运行在修改主机之前停止，并指出需要修改的变量。
"""

TEXT = ENGLISH + "\n" + CHINESE
