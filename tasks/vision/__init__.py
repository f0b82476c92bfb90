"""CNN vision task: LeNet-style CNN and a small ResNet under BP, DFA and its remedies."""
