"""Training loops (`python -m vasa.train.motion`, `vasa train motion`). The library never imports this
package: inference needs only the weights these loops write."""
